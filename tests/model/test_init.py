"""model.init: Keras' initialisers (the default) and PyTorch word_language_model's."""

import numpy as np
import pytest
from flax import nnx

from lmjax.config import ModelConfig
from lmjax.model.lm import LanguageModel


def _model(init: str, tied: bool = False) -> LanguageModel:
    cfg = ModelConfig(embed_size=64, hidden_size=64, num_layers=2, init=init, tie_embeddings=tied)
    return LanguageModel(500, cfg, rngs=nnx.Rngs(0))


def _spans(x, k):
    """Every entry in [-k, k] and the draws fill the range (uniform, not a narrower one)."""
    x = np.asarray(x)
    return np.abs(x).max() <= k and np.abs(x).max() > 0.95 * k and abs(x.mean()) < 0.1 * k


def test_torch_init_is_the_references():
    m = _model("torch")
    k = 64 ** -0.5
    assert _spans(m.embed[...], 0.1) and _spans(m.w_out[...], 0.1)
    assert np.all(np.asarray(m.b_out[...]) == 0)
    for layer in m.layers:
        assert _spans(layer.w_ih[...], k) and _spans(layer.w_hh[...], k)
        b = np.asarray(layer.b[...])  # b_ih + b_hh: within 2k, not the Keras forget bias of 1
        assert np.abs(b).max() <= 2 * k and np.abs(b).max() > k and abs(b.mean()) < 0.2 * k


def test_keras_init_unchanged():
    m = _model("keras")
    assert _spans(m.embed[...], 0.05)
    b = np.asarray(m.layers[0].b[...])
    np.testing.assert_array_equal(b, np.r_[np.zeros(64), np.ones(64), np.zeros(128)])
    w_hh = np.asarray(m.layers[0].w_hh[...])  # orthogonal rows
    np.testing.assert_allclose(w_hh @ w_hh.T, np.eye(64), atol=1e-5)


def test_bad_init_is_one_line():
    with pytest.raises(Exception, match="model.init must be keras or torch"):
        ModelConfig(init="xavier")
