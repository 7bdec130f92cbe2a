"""all-MiniLM-L6-v2 through ONNX Runtime with int8 weights: the fast path of the ``local`` embeddings.

The numpy encoder (minilm.py) is bounded by float32 matrix products (~4.8 GFLOP for a 1 KB prompt). Here the same
encoder, from the same safetensors weights, is written as an ONNX graph (the ``onnx`` package's helper API, no
torch), its matrix products quantized to int8 by onnxruntime's dynamic quantization (per output channel weights,
activations quantized per call), and run by onnxruntime, whose int8 kernels use AMX or AVX-512/AVX VNNI where the
CPU has them. The vectors stay the model's: cosine >= 0.99 against the float32 encoder
(tests/embeddings/test_minilm_onnx.py).

A 1 KB prompt (224 tokens) costs ~15-16 ms of CPU on one core here (numpy: ~90), a short question ~1 ms. What
bounds it, per onnxruntime's profiler: the int8 products (~2.4 G multiply-adds: ~48%), the attention's float32
products over tokens² (Q·Kᵀ and ·V, 0.23 G: ~22%) and its softmax (3.6 M exponentials: ~9%), GELU (~10%), layer
norms, adds and transposes (~10%). Quantizing the attention's products too (both operands per call) kept the
vectors but measured no faster; onnxruntime's fused Attention/QAttention and MultiHeadAttention ops, FastGelu,
SkipLayerNormalization and spinning threads were measured and are not used (see `graph` and `session`).

Quantizing takes seconds, so the int8 model is written once to the model cache directory
(``TOLLGATE_MODEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/tollgate/models``), under a name that changes with the
installed weights file, the graph and the onnx/onnxruntime versions; a process that cannot write there builds it
in memory instead.
Installed by the ``local-embeddings-int8`` extra; without it, minilm.py's numpy encoder serves.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import minilm

log = logging.getLogger("tollgate.embeddings")

GRAPH_VERSION = "2"        # bump when the graph below changes: the cached file's name changes with it


class RuntimeMissing(ImportError):
    """onnxruntime or onnx is not installed (the ``local-embeddings-int8`` extra)."""


def available() -> bool:
    """Whether the extra is installed. ``onnx`` is only looked for: importing it costs seconds, and it is needed
    only to build the int8 model, not to run it."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return importlib.util.find_spec("onnx") is not None


def graph(directory: Path) -> Any:
    """The float32 encoder as an ONNX model: token ids [1, S] in, the mean of the last hidden states [1, 384] out.

    Embeddings (word + position + token type, layer norm), then per layer: self-attention, output projection,
    residual and layer norm, feed-forward with GELU, residual and layer norm. One sequence without padding, so every
    token counts in the mean and no mask is needed.

    The attention is written out rather than onnxruntime's Attention op (quantized, QAttention makes the Q/K/V
    projection 36 int8 products of 32 columns, one per head and matrix): three [S, 384] x [384, 384] products
    (int8 once quantized, sharing one quantization of their input), then the heads as a batch for Q·Kᵀ, softmax and
    ·V in float32. The 1/sqrt(head size) of the scores is folded into the query projection.
    """
    from onnx import TensorProto, helper, numpy_helper

    config = json.loads((directory / "config.json").read_text())
    w = minilm.read_safetensors(directory / "model.safetensors")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    size = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    weights: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, array: np.ndarray) -> str:
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], output: str, domain: str | None = None, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def add_norm(y: str, residual: str, prefix: str, out: str) -> str:
        # Kept as Add + LayerNormalization: onnxruntime's fused SkipLayerNormalization is several times slower on
        # CPU here, so the session disables that fusion (see `session`).
        y = node("Add", [y, const(prefix + "dense.bias", w[prefix + "dense.bias"])], out + "/bias")
        y = node("Add", [y, residual], out + "/residual")
        return node("LayerNormalization", [y, const(prefix + "LayerNorm.weight", w[prefix + "LayerNorm.weight"]),
                                           const(prefix + "LayerNorm.bias", w[prefix + "LayerNorm.bias"])],
                    out, axis=-1, epsilon=eps)

    def projection(x: str, prefix: str, factor: float) -> str:
        """x·Wᵀ + b of a dense layer, both scaled by ``factor``."""
        y = node("MatMul", [x, const(prefix + "weight", w[prefix + "weight"].T * factor)], prefix + "product")
        return node("Add", [y, const(prefix + "bias", w[prefix + "bias"] * factor)], prefix + "projection")

    const("zero", np.array([0], np.int64))
    const("one", np.array([1], np.int64))
    const("two", np.array([2], np.int64))
    const("by_head", np.array([-1, heads, size], np.int64))
    const("hidden_shape", np.array([1, -1, hidden], np.int64))
    node("Shape", ["input_ids"], "shape")
    node("Slice", ["shape", "one", "two"], "length")
    words = node("Gather", [const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"], "words")
    positions = node("Slice", [const("position_embeddings", w["embeddings.position_embeddings.weight"]),
                               "zero", "length", "zero"], "positions")
    x = node("Add", [words, positions], "embeddings/positions")
    x = node("Add", [x, const("token_type", w["embeddings.token_type_embeddings.weight"][0])], "embeddings/type")
    x = node("LayerNormalization", [x, const("embeddings.gamma", w["embeddings.LayerNorm.weight"]),
                                    const("embeddings.beta", w["embeddings.LayerNorm.bias"])],
             "embeddings", axis=-1, epsilon=eps)
    scale = 1.0 / math.sqrt(size)
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        q, k, v = (node("Reshape", [projection(x, p + f"attention.self.{name}.", scale if name == "query" else 1.0),
                                    "by_head"], p + name)
                   for name in ("query", "key", "value"))                      # [S, heads, head size] each
        # the heads as the batch: transBatch reads [S, heads, size] as [heads, S, size] in place, without a copy
        scores = node("FusedMatMul", [q, k], p + "scores", domain="com.microsoft",
                      transB=1, transBatchA=1, transBatchB=1, alpha=1.0)
        a = node("FusedMatMul", [node("Softmax", [scores], p + "probabilities", axis=-1), v], p + "context",
                 domain="com.microsoft", transBatchB=1, alpha=1.0)            # [heads, S, head size]
        a = node("Transpose", [a], p + "context/by_token", perm=[1, 0, 2])
        a = node("Reshape", [a, "hidden_shape"], p + "attention")
        a = node("MatMul", [a, const(p + "attention.output.weight", w[p + "attention.output.dense.weight"].T)],
                 p + "attention.output")
        x = add_norm(a, x, p + "attention.output.", p + "attention.norm")
        # ONNX's Gelu in its tanh form: the same function as the contrib FastGelu, ~30% less time in onnxruntime
        u = node("Gelu", [projection(x, p + "intermediate.dense.", 1.0)], p + "gelu", approximate="tanh")
        d = node("MatMul", [u, const(p + "output.weight", w[p + "output.dense.weight"].T)], p + "output")
        x = add_norm(d, x, p + "output.", p + "output.norm")
    node("ReduceMean", [x, "one"], "pooled", keepdims=0)
    model_graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "length"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, hidden])], weights)
    return helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", 20),
                                                         helper.make_opsetid("com.microsoft", 1)])


def quantize(model: Any, path: Path) -> None:
    """Write ``model`` to ``path`` with its weight matrix products in int8; the attention's products of two
    activations stay float32 (onnxruntime's int8 kernels for those measured no faster), and the word embeddings, a
    lookup table, too."""
    from onnx import TensorProto
    from onnxruntime.quantization import quantize_dynamic

    quieter = _DropAdvice()
    logging.getLogger().addFilter(quieter)
    try:
        quantize_dynamic(model, path, per_channel=True, op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
    finally:
        logging.getLogger().removeFilter(quieter)


class _DropAdvice(logging.Filter):
    """quantize_dynamic advises 'pre-processing' on the root logger at every call; it is meant for exported
    models, not for this graph built with its shapes known."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")


def cache_dir() -> Path:
    from ..settings import Settings

    configured = Settings().model_cache_dir
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tollgate" / "models"


def int8_model(directory: Path) -> str | bytes:
    """The int8 model: the cached file's path, built and cached on first use; its bytes when the cache directory
    cannot be written."""
    weights = (directory / "model.safetensors").stat()
    key = "|".join([GRAPH_VERSION, str(directory), str(weights.st_size), str(weights.st_mtime_ns),
                    *(importlib.metadata.version(name) for name in ("onnx", "onnxruntime"))])
    digest = hashlib.sha256(key.encode())
    folder = cache_dir()
    path = folder / f"{minilm.NAME}-int8-{digest.hexdigest()[:16]}.onnx"
    if path.is_file():
        return str(path)
    log.info("local embeddings: quantizing %s to int8 (once; cached in %s)", minilm.NAME, folder)
    model = graph(directory)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".partial")
        os.close(handle)
    except OSError as exc:
        log.warning("local embeddings: cannot write the model cache %s (%s); quantizing in memory at every start",
                    folder, exc)
        with tempfile.TemporaryDirectory(prefix="tollgate-minilm-") as scratch:
            quantize(model, Path(scratch) / path.name)
            return (Path(scratch) / path.name).read_bytes()
    try:
        quantize(model, Path(partial))
        os.replace(partial, path)        # other processes see the whole file or none
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    _prune(folder, keep=path)
    return str(path)


def _prune(folder: Path, keep: Path) -> None:
    """Remove the builds of other graph versions or weights (~58 MB each) once a new one is in place, and partial
    files left by a build that died. A running process has its model in memory, so removing its file is safe; a
    process of another Tollgate version started later on this host builds its own again (once). A partial file
    younger than an hour may be another process building now: it stays."""
    stale_partial = time.time() - 3600
    for found in folder.glob(f"{minilm.NAME}-int8-*.onnx*"):
        try:
            if found.name.endswith(".partial"):
                if found.stat().st_mtime < stale_partial:
                    found.unlink()
            elif found != keep and found.suffix == ".onnx":
                found.unlink()
                log.info("local embeddings: removed the old model build %s", found.name)
        except OSError:
            pass                         # another process removed it first, or the folder is read-only


def session(model: str | bytes, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # With more than one thread, they spin while a run lasts: the graph is ~150 short steps, and waking a sleeping
    # thread for each cost more than the step (a 1 KB prompt on 2 threads: 14.2 ms sleeping, 11.5 spinning, at the
    # same CPU). They stop at the end of each run, so nothing spins between embeddings to steal the CPU from Kong
    # and the event loop. (One thread has no other to wait for.)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if threads > 1 else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=["SkipLayerNormFusion"])


class OnnxMiniLM:
    """The int8 encoder; `embed` is thread-safe and releases the GIL while onnxruntime runs."""

    backend = "onnxruntime-int8"

    def __init__(self, directory: Path | None = None, threads: int = 1):
        if not available():
            raise RuntimeMissing("int8 local embeddings need onnxruntime and onnx (the local-embeddings-int8 extra)")
        directory = directory or minilm.model_dir()
        self.tokenizer = minilm.load_tokenizer(directory)
        self.session = session(int8_model(directory), threads)

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def embed(self, text: str) -> tuple[np.ndarray, int]:
        """The unit vector of ``text`` and how many tokens the model read."""
        ids = self.tokens(text)
        pooled = self.session.run(None, {"input_ids": np.array([ids], dtype=np.int64)})[0][0]
        return minilm.unit(pooled), len(ids)
