"""Batches as index plans over a device-resident dataset.

The framed arrays go to the device once, with one extra all-padding row (index N, weight 0).
An epoch is a seeded permutation of the N rows cut into (S, B) index rows; the last batch is
filled with the padding row, so every batch has the same shape (nothing recompiles) and every
sample is seen once per epoch. The order depends only on (seed, epoch), so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from lmjax.data.framings import Framed


def host_arrays(framed: Framed) -> dict[str, np.ndarray]:
    """(N, T) arrays -> host arrays of shape (N + 1, T); row N is padding with weight 0."""
    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros((1, a.shape[1]), a.dtype)])

    return {"inputs": pad(framed.inputs), "targets": pad(framed.targets),
            "weights": pad(framed.weights)}


def to_device(framed: Framed) -> dict:
    """:func:`host_arrays` on the default device."""
    return {k: jnp.asarray(v) for k, v in host_arrays(framed).items()}


def epoch_order(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """(S, B) int32 row ids for one epoch: a permutation of range(n), padded with n."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return _rows(perm, n, batch_size)


def lanes(n: int, width: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """(steps, width) row ids for ``framing.carry_state``: column j is a lane of ``steps``
    consecutive rows, lane j + 1 starting where lane j ends, from a random offset (so the
    n - width * steps rows an epoch leaves out change from epoch to epoch)."""
    steps = max(1, min(steps, n // width)) if n >= width else 1
    if n < width:  # fewer rows than lanes: one step, the rest padding (row n)
        out = np.full((1, width), n, np.int32)
        out[0, :n] = np.arange(n)
        return out
    off = int(rng.integers(0, n - width * steps + 1))
    return (off + np.arange(width)[None, :] * steps + np.arange(steps)[:, None]).astype(np.int32)


def lane_order(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """:func:`epoch_order` for ``framing.carry_state``: (n // B, B) lanes of consecutive rows."""
    return lanes(n, batch_size, n // batch_size, np.random.default_rng([seed, epoch]))


def sequential(n: int, batch_size: int) -> np.ndarray:
    """(E, B) row ids covering range(n) in order, padded with n (for evaluation)."""
    return _rows(np.arange(n), n, batch_size)


def _rows(order: np.ndarray, pad_id: int, batch_size: int) -> np.ndarray:
    steps = max(1, math.ceil(len(order) / batch_size))
    out = np.full(steps * batch_size, pad_id, np.int32)
    out[: len(order)] = order
    return out.reshape(steps, batch_size)


def chunk_bounds(steps: int, per_call: int) -> list[tuple[int, int]]:
    """Split ``steps`` into consecutive [start, end) chunks of ``per_call`` (the last shorter)."""
    return [(s, min(s + per_call, steps)) for s in range(0, steps, per_call)]


def subsample(n: int, limit: int, seed: int) -> np.ndarray | None:
    """A fixed sorted subset of ``limit`` row ids (None when all n rows are used)."""
    if limit <= 0 or n <= limit:
        return None
    return np.sort(np.random.default_rng([seed, 7919]).choice(n, limit, replace=False))
