"""Several seeds of one config trained together: ``train.parallel_seeds=K``.

The K train states are stacked on a leading axis and the jitted chunk is ``jax.vmap``-ed over
it: one program, one compilation, one data upload and one process for all seeds. Each seed
still gets its own model initialisation, data order and dropout keys (exactly those of a
single run with that seed) and its own run directory ``<run_dir>/seed_<s>/`` with the usual
files, so ``experiments.compare`` and ``load_run`` treat them like any other run.

Scope: a fixed number of epochs (no time budget, no mid-run resume: rerun instead).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from lmjax.config import Config
from lmjax.data import batches
from lmjax.train import loop
from lmjax.errors import ConfigError
from lmjax.train.datasets import ReplicatedData
from lmjax.train.metrics import finalize
from lmjax.train.optim import resolved
from lmjax.train.parallel import AXIS, Placement, select_devices
from lmjax.train.progress import TrainProgress
from lmjax.train.step import init_state, zero_lstm


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree: Any, k: int) -> list[Any]:
    return [jax.tree.map(lambda x: x[i], tree) for i in range(k)]


def run_seeds(cfg: Config, run_dir: str | Path,
              samples: loop.SamplesFn | None = None) -> list[dict]:
    """Train seeds cfg.seed .. cfg.seed + K - 1 together; returns one summary per seed.
    ``samples``: as for :func:`lmjax.train.loop.run`."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    k = cfg.train.parallel_seeds
    # train.devices > 1: the seed axis is split over the devices (each trains its own seeds; no
    # communication); K is padded with extra seeds up to a multiple of the device count, which
    # train along but are not written
    place = Placement(select_devices(cfg.train.devices))
    if len({d.process_index for d in place.mesh.devices.flat}) > 1:
        raise ConfigError("train.parallel_seeds runs in one process: use train.devices=1 or "
                          "this process's devices only (LMJAX_CPU_DEVICES on a CPU)")
    k_all = -(-k // place.size) * place.size
    seeds = [cfg.seed + i for i in range(k_all)]
    cfgs = [dataclasses.replace(cfg, seed=s, train=dataclasses.replace(cfg.train,
                                                                        parallel_seeds=1))
            for s in seeds]
    seed_axis = NamedSharding(place.mesh, P(AXIS))

    def split(tree: Any) -> Any:  # leading (seed) axis over the devices
        return jax.tree.map(lambda x: jax.device_put(x, seed_axis), tree)

    if cfg.data.shard == "devices":
        raise ConfigError("train.parallel_seeds needs the whole corpus in one process: "
                          "set data.shard=none")
    data = loop.prepare_data(cfg)
    train = data.train
    n, t_len = train.inputs.shape
    bsz = min(cfg.train.batch_size, n)
    steps_per_epoch = max(1, n // bsz) if cfg.framing.carry_state else math.ceil(n / bsz)
    order_of = batches.lane_order if cfg.framing.carry_state else batches.epoch_order
    per_call = cfg.train.steps_per_call or loop.auto_steps_per_call(steps_per_epoch, bsz * t_len)

    states, steps = [], None
    for c in cfgs:
        graphdef, params = loop.build_model(c, len(data.vocab))
        steps = steps or loop.make_steps(dataclasses.replace(cfg, optim=resolved(
            cfg.optim, cfg.train.epochs * steps_per_epoch)), graphdef)  # decay_steps=auto
        lstm = zero_lstm(graphdef, params, bsz) if cfg.framing.carry_state else None
        states.append(init_state(params, steps.tx, loop.dropout_key(c), lstm))
    assert steps is not None
    state = split(_stack(states))
    vtrain = jax.jit(jax.vmap(steps._train_chunk, in_axes=(0, None, 0)), donate_argnums=0)
    veval = jax.jit(jax.vmap(steps._eval_chunk, in_axes=(0, None, None)))

    train_dev = place.replicate(batches.host_arrays(train))
    rows = batches.subsample(n, cfg.train.eval_max_train_samples, cfg.seed)
    one = Placement(list(place.mesh.devices.flat)[:1])  # evaluation rows stay whole (vmap over seeds)
    train_eval = loop.Evaluator(steps, ReplicatedData(one, train) if rows is None
                                else train.take(rows), cfg.train.eval_batch_size)
    valid_eval = (train_eval if data.valid is train
                  else loop.Evaluator(steps, data.valid, cfg.train.eval_batch_size))
    eval_data = [place.replicate(jax.device_get(e.data)) for e in (train_eval, valid_eval)]
    eval_idx = [place.replicate(np.asarray(e.idx)) for e in (train_eval, valid_eval)]
    level = cfg.framing.token_level
    dirs = [run_dir / f"seed_{s}" for s in seeds[:k]]
    writers = [loop.RunWriter(c, d, data, samples=samples) for c, d in zip(cfgs, dirs)]
    train_seconds = 0.0
    records: list[dict] = [{} for _ in seeds]
    try:
        with TrainProgress(cfg.train.epochs * steps_per_epoch, enabled=cfg.train.progress) as bar:
            for epoch in range(cfg.train.epochs):
                order = np.stack([order_of(n, bsz, s, epoch) for s in seeds])
                t0 = time.perf_counter()
                running = None
                if state.lstm is not None:  # carry_state: new lanes, the state restarts
                    state = state.replace(lstm=jnp.zeros_like(state.lstm))
                for a, b in batches.chunk_bounds(steps_per_epoch, per_call):
                    rows = np.full((len(seeds), per_call, bsz), -1, np.int32)  # -1: padding
                    rows[:, : b - a] = order[:, a:b]
                    state, sums, losses = vtrain(state, train_dev, split(rows))
                    sums = {key: v.sum(-1) for key, v in sums.items()}  # per-step -> per-seed
                    running = sums if running is None else jax.tree.map(jnp.add, running, sums)
                    bar.advance(b - a, float(np.mean(np.asarray(losses[:, b - a - 1]))), epoch)
                state = jax.block_until_ready(state)
                train_seconds += time.perf_counter() - t0
                tm = jax.device_get(veval(state.params, eval_data[0], eval_idx[0]))
                vm = tm if valid_eval is train_eval else jax.device_get(
                    veval(state.params, eval_data[1], eval_idx[1]))
                run_h = jax.device_get(running)
                for i, w in enumerate(writers):
                    pick = lambda d: {key: v[i] for key, v in d.items()}  # noqa: E731
                    records[i] = loop.epoch_record(
                        epoch, epoch + 1.0, pick(run_h), finalize(pick(tm), level),
                        finalize(pick(vm), level), train_eval.oracle, valid_eval.oracle,
                        train_seconds, time.perf_counter() - t_start)
                    w.log(records[i], int(state.step[i]))
                bar.epoch_done(records[0])
        summaries = []
        for st, w, rec in zip(_unstack(state, k), writers, records):
            summaries.append(w.finish(st, steps, rec, cfg.train.epochs, train_seconds,
                                      time.perf_counter() - t_start))
    except BaseException as e:
        for w in writers:
            w.fail(e)
        raise
    return summaries
