"""The fused output layer + softmax cross-entropy against autodiff of the plain version."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lmjax.config import ModelConfig
from lmjax.model.lm import LanguageModel
from lmjax.model.softmax_xent import xent_sum
from lmjax.train.metrics import weighted_sums


def _plain(h, w, b, targets, weights):
    return weighted_sums(h @ w + b, targets, weights, ranks=False)["loss_sum"]


@pytest.mark.parametrize("n,hid,v", [(7, 5, 11), (64, 16, 300)])
def test_value_and_gradients_equal_autodiff(n, hid, v):
    rng = np.random.default_rng(n)
    h = jnp.asarray(rng.standard_normal((n, hid)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((hid, v)), jnp.float32)
    b = jnp.asarray(rng.standard_normal(v), jnp.float32)
    targets = jnp.asarray(rng.integers(0, v, n), jnp.int32)
    # zero weights (padding), fractional ones, and a repeated target
    weights = jnp.asarray(rng.choice([0.0, 0.5, 1.0], n), jnp.float32)
    targets = targets.at[1].set(targets[0])
    args = (h, w, b, targets, weights)
    fused, g_fused = jax.value_and_grad(xent_sum, argnums=(0, 1, 2, 4))(*args)
    plain, g_plain = jax.value_and_grad(_plain, argnums=(0, 1, 2, 4))(*args)
    np.testing.assert_allclose(fused, plain, rtol=1e-5)
    for a, b_ in zip(g_fused, g_plain):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)
    # and under jit, as the training step runs it
    jf = jax.jit(jax.grad(xent_sum, argnums=(0, 1, 2)))(*args)
    for a, b_ in zip(jf, g_plain[:3]):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tied", [False, True])
def test_model_loss_sums_equal_logits_path(tied):
    """LanguageModel.loss_sums (training) == weighted_sums over LanguageModel.logits
    (evaluation), value and parameter gradients, tied embeddings included."""
    cfg = ModelConfig(embed_size=8, hidden_size=8, num_layers=2, tie_embeddings=tied)
    model = LanguageModel(23, cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.integers(0, 23, (3, 6)), jnp.int32)
    targets = jnp.asarray(rng.integers(0, 23, (6, 3)), jnp.int32)
    weights = jnp.ones((6, 3), jnp.float32).at[-1].set(0.0)

    def fused(p):
        m = nnx.merge(graphdef, p)
        return m.loss_sums(m.hidden_states(tokens)[0], targets, weights)["loss_sum"]

    def plain(p):
        m = nnx.merge(graphdef, p)
        return weighted_sums(m(tokens), targets, weights, ranks=False)["loss_sum"]

    lf, gf = jax.value_and_grad(fused)(params)
    lp, gp = jax.value_and_grad(plain)(params)
    np.testing.assert_allclose(lf, lp, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(gf), jax.tree.leaves(gp)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
