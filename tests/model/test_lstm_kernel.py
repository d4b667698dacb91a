"""The custom-VJP LSTM recurrence against the plain lax.scan + autodiff reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.model.lstm_kernel import lstm_recurrence, lstm_recurrence_reference

T, B, H = 7, 3, 5
FWD_TOL = dict(rtol=1e-6, atol=1e-6)
GRAD_TOL = dict(rtol=1e-5, atol=1e-6)


def _inputs(seed, t=T, b=B, h=H, models=None):
    """Random (xp, w_hh, h0, c0), scaled so that the gates are neither linear nor saturated."""
    lead = () if models is None else (models,)
    rng = np.random.default_rng(seed)
    xp = rng.normal(size=lead + (t, b, 4 * h))
    w_hh = rng.normal(size=lead + (h, 4 * h)) / np.sqrt(h)
    h0 = 0.5 * rng.normal(size=lead + (b, h))
    c0 = rng.normal(size=lead + (b, h))
    return tuple(jnp.asarray(x, jnp.float32) for x in (xp, w_hh, h0, c0))


def _full_loss(fn, wts):
    """A random weighted sum of hs plus h_T and c_T terms: every output gets a cotangent."""
    r_hs, r_h, r_c = wts

    def loss(xp, w_hh, h0, c0):
        hs, (h, c) = fn(xp, w_hh, h0, c0)
        return jnp.sum(hs * r_hs) + jnp.sum(h * r_h) + jnp.sum(jnp.sin(c) * r_c)
    return loss


def _weights(seed, t=T, b=B, h=H):
    rng = np.random.default_rng(seed + 100)
    return tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(t, b, h), (b, h), (b, h)])


def _assert_trees_close(got, want, tol):
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **tol)


@pytest.mark.parametrize("seed,t,b,h", [(0, T, B, H), (1, 1, 2, 3)])
def test_forward_matches_reference(seed, t, b, h):
    args = _inputs(seed, t, b, h)
    hs, (h_t, c_t) = jax.jit(lstm_recurrence)(*args)
    hs_r, (h_r, c_r) = jax.jit(lstm_recurrence_reference)(*args)
    assert hs.shape == (t, b, h) and h_t.shape == c_t.shape == (b, h)
    _assert_trees_close((hs, h_t, c_t), (hs_r, h_r, c_r), FWD_TOL)
    np.testing.assert_array_equal(np.asarray(hs[-1]), np.asarray(h_t))
    assert float(jnp.max(jnp.abs(hs))) > 0.05  # not a trivially small regime


@pytest.mark.parametrize("seed,t,b,h", [(1, 1, 2, 3), (2, 12, 4, 8)])
def test_gradients_match_reference(seed, t, b, h):
    args = _inputs(seed, t, b, h)
    wts = _weights(seed, t, b, h)
    vg = jax.jit(jax.value_and_grad(_full_loss(lstm_recurrence, wts), argnums=(0, 1, 2, 3)))
    vg_r = jax.jit(jax.value_and_grad(_full_loss(lstm_recurrence_reference, wts),
                                      argnums=(0, 1, 2, 3)))
    (v, g), (v_r, g_r) = vg(*args), vg_r(*args)
    np.testing.assert_allclose(float(v), float(v_r), rtol=1e-6)
    _assert_trees_close(g, g_r, GRAD_TOL)
    assert all(float(jnp.max(jnp.abs(x))) > 1e-3 for x in g)  # every input gets a gradient


def test_many_to_one_loss_on_last_step_only():
    """Cotangent of hs is zero except at the last step; h_T and c_T are unused (symbolic zeros)."""
    args = _inputs(3)
    r = jnp.asarray(np.random.default_rng(7).normal(size=(B, H)), jnp.float32)

    def loss(fn):
        return lambda *a: jnp.sum(jnp.tanh(fn(*a)[0][-1]) * r)
    g = jax.jit(jax.grad(loss(lstm_recurrence), argnums=(0, 1, 2, 3)))(*args)
    g_r = jax.jit(jax.grad(loss(lstm_recurrence_reference), argnums=(0, 1, 2, 3)))(*args)
    _assert_trees_close(g, g_r, GRAD_TOL)
    assert float(jnp.max(jnp.abs(g[0][0]))) > 1e-4  # the gradient reaches the first step


def test_loss_on_final_hidden_state_only():
    """Only h_T is used: hs gets a zero cotangent and c_T a symbolic zero."""
    args = _inputs(4)

    def loss(fn):
        return lambda *a: jnp.sum(fn(*a)[1][0] ** 2)
    g = jax.jit(jax.grad(loss(lstm_recurrence), argnums=(0, 1, 2, 3)))(*args)
    g_r = jax.jit(jax.grad(loss(lstm_recurrence_reference), argnums=(0, 1, 2, 3)))(*args)
    _assert_trees_close(g, g_r, GRAD_TOL)


def test_vmap_over_models_matches_python_loop():
    """vmap of a jitted value_and_grad over a leading batch-of-models axis, as the trainer does."""
    models = 3
    stacked = _inputs(5, models=models)
    wts = _weights(5)
    vg = jax.value_and_grad(_full_loss(lstm_recurrence, wts), argnums=(0, 1, 2, 3))
    vg_r = jax.jit(jax.value_and_grad(_full_loss(lstm_recurrence_reference, wts),
                                      argnums=(0, 1, 2, 3)))
    v, g = jax.jit(jax.vmap(vg))(*stacked)
    assert v.shape == (models,) and g[1].shape == (models, H, 4 * H)
    for m in range(models):
        one = tuple(x[m] for x in stacked)
        v_m, g_m = vg_r(*one)
        np.testing.assert_allclose(float(v[m]), float(v_m), rtol=1e-6)
        _assert_trees_close(tuple(x[m] for x in g), g_m, GRAD_TOL)
    # forward under vmap too, with a shared (unbatched) w_hh
    xp, w_hh, h0, c0 = stacked
    hs = jax.jit(jax.vmap(lstm_recurrence, in_axes=(0, None, 0, 0)))(xp, w_hh[0], h0, c0)[0]
    ref = jax.jit(lstm_recurrence_reference)
    for m in range(models):
        want = ref(xp[m], w_hh[0], h0[m], c0[m])[0]
        np.testing.assert_allclose(np.asarray(hs[m]), np.asarray(want), **FWD_TOL)


def test_float32_and_dtype_promotion():
    xp, w_hh, h0, c0 = _inputs(6, t=2)

    def loss(x):
        hs, (h, c) = lstm_recurrence(x, w_hh, h0, c0)
        return jnp.sum(hs), (hs.dtype == h.dtype == c.dtype == jnp.float32)
    # a bfloat16 input projection is promoted to float32; its gradient comes back as bfloat16
    g, all_f32 = jax.jit(jax.grad(loss, has_aux=True))(xp.astype(jnp.bfloat16))
    assert bool(all_f32)
    assert g.dtype == jnp.bfloat16 and g.shape == xp.shape
    assert float(jnp.max(jnp.abs(g.astype(jnp.float32)))) > 1e-3


def test_bad_shapes_raise():
    xp, w_hh, h0, c0 = _inputs(0)
    with pytest.raises(ValueError):
        lstm_recurrence(xp[..., :-1], w_hh, h0, c0)
    with pytest.raises(ValueError):
        lstm_recurrence(xp, w_hh, h0[:, :-1], c0)
