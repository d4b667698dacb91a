"""Losses and metrics: weighted sparse cross-entropy, accuracy, top-k, and the oracle ceiling.

Device-side functions return *sums* (loss, correct, top-k correct, weight) so batches and chunks
add up exactly; :func:`finalize` turns sums into means, perplexity and bits per character.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

METRIC_KEYS = ("loss_sum", "correct", "top5", "weight")


def weighted_sums(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                  k: int = 5, ranks: bool = True) -> dict[str, jax.Array]:
    """Sums over weighted positions.

    logits: (..., V) float; targets: (...) int; weights: (...) float, same leading shape.
    ``ranks=False`` leaves out ``correct`` and ``top5`` (the train step needs only the loss:
    ranking the target is one more pass over every logit).
    """
    if logits.ndim != targets.ndim + 1 or targets.shape != weights.shape:
        raise ValueError(f"rank mismatch: logits {logits.shape}, targets {targets.shape}, "
                         f"weights {weights.shape}")
    logits = logits.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    tgt = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = logz - tgt  # (...)
    if not ranks:
        return {"loss_sum": jnp.sum(weights * nll), "weight": jnp.sum(weights)}
    # rank of the target = number of logits strictly greater than it (ties favour the target)
    rank = jnp.sum(logits > tgt[..., None], axis=-1)
    return {
        "loss_sum": jnp.sum(weights * nll),
        "correct": jnp.sum(weights * (rank == 0)),
        "top5": jnp.sum(weights * (rank < k)),
        "weight": jnp.sum(weights),
    }


def finalize(sums: dict, level: str) -> dict[str, float]:
    """Sums (device or host) -> loss, accuracy, top5_accuracy, perplexity or bits_per_char."""
    s = {k: float(v) for k, v in sums.items()}
    w = max(s["weight"], 1e-12)
    loss = s["loss_sum"] / w
    out = {"loss": loss, "accuracy": s["correct"] / w, "top5_accuracy": s["top5"] / w}
    if level == "char":
        out["bits_per_char"] = loss / math.log(2)
    else:
        out["perplexity"] = math.exp(min(loss, 700.0))
    return out


def oracle_accuracy(inputs: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> float:
    """The best accuracy any model of these inputs could reach on these samples.

    A model predicting position t sees ``inputs[n, :t+1]``; where the same context occurs with
    different targets, at most the most frequent target can be right. Contexts are numbered
    exactly (no hashing) by extending the previous position's context id with one token.

    inputs, targets: (N, T) int; weights: (N, T) float (counts; 0 = ignored).
    """
    n, t_len = inputs.shape
    total = float(weights.sum())
    if total == 0:
        return float("nan")
    ctx = np.zeros(n, np.int64)
    best = 0.0
    for t in range(t_len):
        tok = inputs[:, t].astype(np.int64)
        _, ctx = np.unique(ctx * (int(tok.max()) + 1) + tok, return_inverse=True)
        ctx = ctx.reshape(-1).astype(np.int64)
        w = weights[:, t]
        m = w > 0
        if not m.any():
            continue
        tgt = targets[m, t].astype(np.int64)
        code = ctx[m] * (int(tgt.max()) + 1) + tgt
        uniq, inv = np.unique(code, return_inverse=True)
        counts = np.bincount(inv.reshape(-1), weights=w[m])
        keys = uniq // (int(tgt.max()) + 1)
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        best += float(np.maximum.reduceat(counts, starts).sum())
    return best / total
