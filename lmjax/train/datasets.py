"""Where the framed samples live on the devices, and the batch-index plans that read them.

Two layouts, one interface (``array``, ``epoch_order``, ``sequential``, ``take``):

* :class:`ReplicatedData` (``data.shard=none``, the single-process default): every device holds
  the whole framed dataset plus a padding row; batch rows are global row ids, split over the
  devices, and the step gathers them with plain indexing.
* :class:`ShardedData` (``data.shard=devices``, the multi-process default): device k holds only
  shard k (see :mod:`lmjax.data.shards`), padded to the largest shard's row count + 1; batch
  columns k*b .. (k+1)*b - 1 (b = batch / devices) are row ids *local to shard k*, and the step
  gathers them inside a ``shard_map``, so no device ever needs another's rows. An epoch is a
  seeded permutation of each shard (``default_rng([seed, epoch, k])``), cut into the same number
  of steps on every device (shorter shards are topped up with the zero-weight padding row).

Both are built from host arrays by ``jax.make_array_from_callback``, so each process
materialises only its own devices' data.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from lmjax.data import batches
from lmjax.data.framings import Framed
from lmjax.train.metrics import oracle_accuracy
from lmjax.train.parallel import AXIS, Placement

Take = Callable[[dict, jax.Array], dict]


def plain_take(data: dict, ix: jax.Array) -> dict:
    return {k: v[ix] for k, v in data.items()}


def sharded_take(place: Placement) -> Take:
    """Gather batch rows device-locally: each device indexes its own shard with its own ids."""
    spec = P(AXIS)
    local = jax.shard_map(plain_take, mesh=place.mesh, in_specs=(spec, spec), out_specs=spec)
    return local


class ReplicatedData:
    sharded = False

    def __init__(self, place: Placement, framed: Framed, array: dict | None = None,
                 carry: bool = False):
        self.place, self.framed, self.carry = place, framed, carry
        self.n, self.seq_len = framed.inputs.shape
        self.array = array if array is not None else place.replicate(batches.host_arrays(framed))

    @functools.cached_property
    def oracle(self) -> float:
        return oracle_accuracy(self.framed.inputs, self.framed.targets, self.framed.weights)

    def steps_per_epoch(self, bsz: int) -> int:
        return max(1, self.n // bsz) if self.carry else math.ceil(self.n / bsz)

    def epoch_order(self, bsz: int, seed: int, epoch: int) -> np.ndarray:
        if self.carry:
            return batches.lane_order(self.n, bsz, seed, epoch)
        return batches.epoch_order(self.n, bsz, seed, epoch)

    def sequential(self, bsz: int) -> np.ndarray:
        return batches.sequential(self.n, bsz)

    def subset(self, limit: int, seed: int) -> "ReplicatedData":
        rows = batches.subsample(self.n, limit, seed)
        return self if rows is None else ReplicatedData(self.place, self.framed.take(rows))


class ShardedData:
    """Shard k of the samples on mesh device k; ``counts``: every shard's row count."""

    sharded = True

    def __init__(self, place: Placement, local: list[Framed], counts: list[int],
                 carry: bool = False):
        self.place, self.local, self.counts, self.carry = place, local, list(counts), carry
        self.positions = place.local_positions()
        assert len(local) == len(self.positions) and len(counts) == place.size
        self.n = sum(counts)
        self.seq_len = local[0].seq_len
        self.rows = max(counts) + 1  # per device; row rows-1 (and any past a shard's end) pads
        blocks = {}
        for k, framed in zip(self.positions, local):
            host = batches.host_arrays(framed)
            blocks[k] = {name: np.concatenate([a, np.zeros((self.rows - len(a),) + a.shape[1:],
                                                            a.dtype)])
                         for name, a in host.items()}
        sharding = NamedSharding(place.mesh, P(AXIS))

        def build(name: str) -> jax.Array:
            a0 = blocks[self.positions[0]][name]
            shape = (place.size * self.rows,) + a0.shape[1:]
            return jax.make_array_from_callback(
                shape, sharding, lambda idx: blocks[(idx[0].start or 0) // self.rows][name])

        self.array = {name: build(name) for name in blocks[self.positions[0]]}
        self.oracle = float("nan")  # needs every sample in one place; not computed

    def steps_per_epoch(self, bsz: int) -> int:
        b = bsz // self.place.size
        if self.carry:  # every shard's lanes as long as the shortest shard allows
            return max(1, min(self.counts) // b)
        return max(1, math.ceil(max(self.counts) / b))

    def _plan(self, bsz: int, steps: int, order: Callable[[int], np.ndarray]) -> np.ndarray:
        b = bsz // self.place.size
        out = np.full((steps, bsz), self.rows - 1, np.int32)
        for k in self.positions:  # other processes' columns stay padding: never read here
            col = np.full(steps * b, self.rows - 1, np.int32)
            ids = order(k)
            col[: len(ids)] = ids
            out[:, k * b:(k + 1) * b] = col.reshape(steps, b)
        return out

    def epoch_order(self, bsz: int, seed: int, epoch: int) -> np.ndarray:
        if self.carry:
            b, steps = bsz // self.place.size, self.steps_per_epoch(bsz)
            return self._plan(bsz, steps, lambda k: batches.lanes(
                self.counts[k], b, steps, np.random.default_rng([seed, epoch, k])).reshape(-1))
        return self._plan(bsz, self.steps_per_epoch(bsz), lambda k: np.random.default_rng(
            [seed, epoch, k]).permutation(self.counts[k]))

    def sequential(self, bsz: int) -> np.ndarray:
        """Every row of every shard once, in order (evaluation; carry_state plays no part)."""
        steps = max(1, math.ceil(max(self.counts) / (bsz // self.place.size)))
        return self._plan(bsz, steps, lambda k: np.arange(self.counts[k]))

    def subset(self, limit: int, seed: int) -> "ShardedData":
        """About ``limit`` rows in all: a fixed subset of each shard."""
        per = math.ceil(limit / self.place.size) if limit > 0 else 0
        if per == 0 or max(self.counts) <= per:
            return self
        take = [framed.take(np.sort(np.random.default_rng([seed, 7919, k]).choice(
            len(framed), per, replace=False))) if len(framed) > per else framed
                for k, framed in zip(self.positions, self.local)]
        return ShardedData(self.place, take, [min(c, per) for c in self.counts])


def take_fn(dataset: Any) -> Take:
    return sharded_take(dataset.place) if dataset.sharded else plain_take
