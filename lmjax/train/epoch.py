"""One epoch of training as a pipeline of jitted chunks: the inner part of the training loop.

:class:`ChunkedEpoch` dispatches chunks of the size :class:`~lmjax.train.chunking.ChunkSizer`
says (their rows padded to that size), reads each chunk's per-step sums one chunk behind the
device, feeds the measured times back to the sizer, and between chunks answers a stop request,
a checkpoint due (``due`` / ``save``, from the loop) and the time budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from lmjax.config import Config
from lmjax.errors import TrainingDiverged
from lmjax.train import faults
from lmjax.train.chunking import ChunkSizer
from lmjax.train.progress import TrainProgress
from lmjax.train.resume import Position
from lmjax.train.signals import StopSignals
from lmjax.train.step import Steps, TrainState


@dataclass
class Chunk:
    """A dispatched chunk whose results are not read yet."""

    sums: Any  # per-step metric sums, (K,) each
    losses: Any  # (K,)
    steps: int  # real steps (the rest of K is padding)
    first: int  # its first step's index in the epoch
    dispatched: float  # perf_counter when its dispatch returned (after any compilation)



class ChunkedEpoch:
    """Runs epochs' steps for the loop. ``due(step)``: is a checkpoint due at this global step;
    ``save(state, pos)``: write one; ``timings``: the writer's, for the first chunk's time."""

    def __init__(self, cfg: Config, steps: Steps, train: Any, bsz: int, sizer: ChunkSizer,
                 stop: StopSignals, t_start: float, timings: dict,
                 due: Callable[[int], bool], save: Callable[[TrainState, Position], None],
                 kept: Callable[[], str]):
        self.cfg, self.steps, self.train, self.bsz, self.sizer = cfg, steps, train, bsz, sizer
        self.stop, self.t_start, self.timings = stop, t_start, timings
        self.due, self.save, self.kept = due, save, kept
        self.place, self.train_dev = train.place, train.array
        self.compiled: set[int] = set()  # chunk sizes dispatched so far (each compiled once)
        self.period = 0.0  # the last measured time from one chunk's read to the next

    def dispatch(self, state: TrainState, order: np.ndarray, a: int) -> tuple[Any, Chunk, bool]:
        """Start steps a.. of the epoch (one chunk of the sizer's size, cut at the epoch's end;
        padded with -1 rows to that size). Returns the new state, the chunk, and whether this
        dispatch compiled a new size."""
        k = self.sizer.size
        b = min(a + k, len(order))
        rows = np.full((k,) + order.shape[1:], -1, np.int32)
        rows[: b - a] = order[a:b]
        fresh = k not in self.compiled
        state, sums, losses = self.steps.train_chunk(state, self.train_dev, self.place.rows(rows))
        self.compiled.add(k)
        return state, Chunk(sums, losses, b - a, a, time.perf_counter()), fresh

    def collect(self, c: Chunk, total: dict, epoch: int, first: int, bar: TrainProgress,
                 train_s: float) -> None:
        """Read a chunk's per-step sums into ``total`` (added in step order, so the sums do not
        depend on where chunks end), check its losses, advance the progress."""
        host, losses = jax.device_get((c.sums, c.losses))
        if "first_chunk_seconds" not in self.timings:  # this process's first chunk
            self.timings.update(first_chunk_seconds=time.perf_counter() - self.t_start,
                                       first_chunk_steps=c.steps)
        for k, v in host.items():
            acc = total.get(k, 0.0)
            for x in np.asarray(v, np.float64)[: c.steps]:
                acc += x
            total[k] = float(acc)
        losses = np.asarray(losses)[: c.steps]
        if not np.all(np.isfinite(losses)):
            bad = int(np.argmin(np.isfinite(losses)))
            raise TrainingDiverged(f"loss became {float(losses[bad])} at epoch {epoch + 1}, "
                                   f"step {first + c.first + bad + 1}; "
                                   f"{self.kept()}")
        bar.advance(c.steps, total["loss_sum"] / max(total["weight"], 1e-12), epoch, train_s)

    def run(self, state: TrainState, epoch: int, start: int, total: dict, pos: Position,
               bar: TrainProgress):
        """Steps start.. of one epoch in jitted chunks. Reads each chunk's sums only after the
        next is dispatched, so the host never stalls the device; syncs only to checkpoint.
        Returns (state, summed metrics, steps done, stop reason, train seconds so far)."""
        cfg, budget = self.cfg, self.cfg.train.time_budget_s
        order = self.train.epoch_order(self.bsz, cfg.seed, epoch)
        first = pos.step - start  # global step before this epoch's first step
        t0 = time.perf_counter()
        pending, done, reason, read_at = None, start, None, None

        def train_s() -> float:
            return pos.train_seconds + time.perf_counter() - t0

        def save_here() -> None:  # a mid-epoch checkpoint at ``done``
            self.save(state, Position(
                step=first + done, epoch=epoch, batch=done, running=dict(total),
                train_seconds=train_s(),
                wall_seconds=pos.wall_seconds + time.perf_counter() - self.t_start,
                logged=epoch, record=pos.record, best_val_loss=pos.best_val_loss,
                best_step=pos.best_step, wandb_id=pos.wandb_id))

        while done < len(order):
            if self.stop.signum:  # came while the host waited: do not start another chunk
                reason = "signal"
                if pending is not None:
                    self.collect(pending, total, epoch, first, bar, train_s())
                    pending = None
                if done > start:
                    save_here()
                break
            state, chunk, fresh = self.dispatch(state, order, done)
            faults.reached("chunk")
            done = chunk.first + chunk.steps
            if pending is not None:
                self.collect(pending, total, epoch, first, bar, train_s())
                now = time.perf_counter()
                if not fresh:  # a compilation meanwhile would have delayed the read
                    self.sizer.measured(pending.steps, now - max(pending.dispatched,
                                                                 read_at or 0.0))
                    if read_at is not None:  # the loop's period, host work included
                        self.period = now - read_at
                read_at = now
            pending = chunk
            if self.sizer.step_s is None:  # the run's first chunk: time it before the next
                self.collect(pending, total, epoch, first, bar, train_s())
                read_at = time.perf_counter()
                self.sizer.measured(chunk.steps, read_at - chunk.dispatched)
                pending = None
            if self.stop.signum:
                reason = "signal"
            elif budget and train_s() + 2 * max(self.sizer.chunk_seconds(),
                                                self.period) >= budget:
                # the chunk just dispatched ends ~one chunk from now; one more would cross the
                # budget, so stop after this one: training time stays within the budget
                reason = "budget"
            if done < len(order) and (reason == "signal" or (not reason and self.due(first + done))):
                if pending is not None:
                    self.collect(pending, total, epoch, first, bar, train_s())
                pending, read_at = None, None
                save_here()
            if reason:
                break
        if pending is not None:
            self.collect(pending, total, epoch, first, bar, train_s())
        state = jax.block_until_ready(state)
        return state, total, done, reason, train_s()
