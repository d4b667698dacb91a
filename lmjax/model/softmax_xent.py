"""The output layer and its softmax cross-entropy as one differentiable function.

``xent_sum(h, w, b, targets, weights) = sum_i weights_i * (logsumexp(z_i) - z_i[targets_i])``
with ``z = h @ w + b``, differentiated by a hand-written backward pass. It computes exactly
what autodiff of ``logits = h @ w + b; weighted_sums(logits, ...)`` computes, in less time,
because on the CPU a
word model's training step is mostly this layer (a (T * B, H) x (H, V) product, V in the tens of
thousands) and autodiff's version spends time it does not need to:

* the forward pass keeps ``exp(logits - max)`` and the row sums, so the backward pass forms the
  softmax with one multiply instead of a second pass of ``exp`` over every logit;
* the target's ``-1`` is added at one position per row, not through a dense one-hot;
* the weight gradient ``h^T @ d`` is formed from an ``h^T`` copied out once
  (``optimization_barrier`` keeps XLA from folding the transpose back into the product): XLA's
  CPU backend runs the transposed-operand product about 2x slower (measured on the 2-core CPU:
  200 x 700 x 15,195, 35 ms folded against 18 ms on the copy).

Timings: docs/benchmarks.md, "Where lmjax's step spends its time" (the fused output layer).
Tested against autodiff of the plain version: the same loss and gradients to float rounding
(tests/model/test_softmax_xent.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


@jax.custom_vjp
def xent_sum(h: jax.Array, w: jax.Array, b: jax.Array, targets: jax.Array,
             weights: jax.Array) -> jax.Array:
    """h (N, H), w (H, V), b (V,), targets (N,) int, weights (N,) -> the weighted sum of the
    rows' negative log-likelihoods (a scalar)."""
    return _forward(h, w, b, targets, weights)[0]


def _forward(h, w, b, targets, weights):
    logits = (h @ w + b).astype(jnp.float32)
    m = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    e = jnp.exp(logits - m)
    s = jnp.sum(e, axis=-1)
    tgt = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    nll = m[:, 0] + jnp.log(s) - tgt
    return jnp.sum(weights * nll), (h, w, e, s, nll, targets, weights)


def _backward(res, g):
    h, w, e, s, nll, targets, weights = res
    c = weights * g  # d loss / d nll_i
    d = e * (c / s)[:, None]  # c_i * softmax_i
    d = d.at[jnp.arange(d.shape[0]), targets].add(-c)
    ht = jax.lax.optimization_barrier(h.T)
    dh = (d @ w.T).astype(h.dtype)
    dw = (ht @ d).astype(w.dtype)
    db = jnp.sum(d, axis=0).astype(w.dtype)
    dt = np.zeros(targets.shape, jax.dtypes.float0)
    return dh, dw, db, dt, nll * g


xent_sum.defvjp(_forward, _backward)
