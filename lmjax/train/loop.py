"""The training loop: data -> model -> epochs of jitted chunks -> eval -> trackers -> run dir.

``run(cfg, run_dir)`` is everything ``python -m experiments.run`` does after Hydra composed the
config. It writes into ``run_dir``: config.yaml, vocab.json, metrics.jsonl (one line per epoch),
samples.txt, summary.json and checkpoints/ (orbax).

Runs survive: checkpoints are written at chunk boundaries (every ``train.checkpoint_every_s``
seconds, ``train.checkpoint_every_steps`` steps or ``train.checkpoint_every`` epochs, and at
the end); an existing run dir with the same config is resumed from its latest checkpoint
(``resume.py``) and continues bit for bit; SIGTERM / Ctrl-C save a checkpoint and exit; a NaN
loss stops the run without saving the bad state.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmjax.cli import StopSignals
from lmjax.config import Config
from lmjax.data import batches
from lmjax.data.framings import Framed
from lmjax.errors import Interrupted, TrainingDiverged
from lmjax.model.lm import LanguageModel
from lmjax.train import faults
from lmjax.train.checkpoint import Checkpointer, FollowerCheckpointer
from lmjax.train.datasets import ReplicatedData, ShardedData, take_fn
from lmjax.train.metrics import finalize
from lmjax.train.optim import current_lr, make_optimizer, plateau_update, resolved
from lmjax.train.parallel import Placement, process_run_dir, select_devices
from lmjax.train.prepare import Prepared, prepare, prepare_data
from lmjax.train.progress import TrainProgress
from lmjax.train.resume import Position, open_run_dir, restore, wandb_id_in
from lmjax.train.step import Steps, TrainState, init_state
from lmjax.train.writer import RunWriter, state_tree

__all__ = ["run", "TrainingDiverged", "RunWriter", "epoch_record", "prepare_data", "build_model",
           "make_steps", "state_tree", "dropout_key", "auto_steps_per_call"]


def build_model(cfg: Config, vocab_size: int) -> tuple[nnx.GraphDef, Any]:
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0)
    model = LanguageModel(vocab_size, cfg.model, rngs=nnx.Rngs(params=key))
    return nnx.split(model)


def dropout_key(cfg: Config) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)


def make_steps(cfg: Config, graphdef: nnx.GraphDef, take: Any = None) -> Steps:
    """``take``: how a step gathers its batch from the dataset (datasets.take_fn)."""
    return Steps(graphdef, make_optimizer(cfg.optim), last_only=cfg.framing.last_only,
                 dropout=cfg.model.stochastic, take=take, carry_state=cfg.framing.carry_state)


def datasets_for(cfg: Config, data: Prepared, place: Placement) -> tuple[Any, Any]:
    """The device-resident train and valid sets in this run's layout (datasets.py)."""
    if data.shards is not None:
        train = ShardedData(place, data.train_parts, data.train_counts,
                            cfg.framing.carry_state)
        valid = train if data.valid_parts is data.train_parts else ShardedData(
            place, data.valid_parts, data.valid_counts)
        return train, valid
    train = ReplicatedData(place, data.train, carry=cfg.framing.carry_state)
    valid = train if data.valid is data.train else ReplicatedData(place, data.valid)
    return train, valid


class Evaluator:
    """Metric sums of a fixed sample set, in one jitted scan over fixed-size batches.

    ``dataset``: a :mod:`lmjax.train.datasets` layout (or a Framed, placed on one device)."""

    def __init__(self, steps: Steps, dataset: Any, batch_size: int):
        if isinstance(dataset, Framed):
            dataset = ReplicatedData(Placement(select_devices("1")), dataset)
        self.steps = steps
        size = dataset.place.size
        self.data = dataset.array
        bsz = min(batch_size, -(-dataset.n // size) * size)
        bsz = -(-bsz // size) * size  # a multiple of the device count
        self.idx = dataset.place.rows(dataset.sequential(bsz))
        self.oracle = dataset.oracle

    def __call__(self, params: Any) -> dict:
        return self.steps.eval_chunk(params, self.data, self.idx)


def auto_steps_per_call(steps_per_epoch: int, tokens_per_step: int) -> int:
    """Fuse steps so each jitted call does a fair amount of work (~100k tokens, capped at 200
    steps): enough to hide dispatch, small enough that progress, time budgets and signals are
    handled within a second or two."""
    return max(1, min(steps_per_epoch, 200, math.ceil(100_000 / tokens_per_step)))


_auto_steps_per_call = auto_steps_per_call


def epoch_batch(cfg: Config, train: Any) -> int:
    """The batch size of a run: a corpus smaller than one batch trains in one (padded) batch
    split over the devices."""
    return min(cfg.train.batch_size, -(-train.n // train.place.size) * train.place.size)


def _finite(tree: Any) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def run(cfg: Config, run_dir: str | Path,
        on_epoch: Callable[[dict, int], None] | None = None,
        on_start: Callable[[], None] | None = None) -> dict:
    """Train one model as configured (or resume the run in ``run_dir``); returns the summary
    (also written to summary.json).

    ``on_epoch(record, step)``, if given, is called after each epoch's metrics are logged (a
    hyperparameter search reports them to its pruner); an exception it raises (e.g.
    :class:`lmjax.errors.Pruned`) ends the run like any failure, with the metrics so far kept.
    ``on_start()``, if given, is called once the run dir is accepted, before training."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    place = Placement(select_devices(cfg.train.devices))
    place.check_batch(cfg.train.batch_size)
    data = prepare(cfg, place)  # bad input fails here, before anything is written
    main_dir = run_dir
    if jax.process_count() > 1:  # process 0 owns run_dir and W&B; the others keep a copy
        run_dir = process_run_dir(run_dir)
        if jax.process_index() > 0:
            cfg = dataclasses.replace(
                cfg, logger=dataclasses.replace(cfg.logger, name="none"),
                train=dataclasses.replace(cfg.train, progress=False))
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = open_run_dir(cfg, run_dir)
    graphdef, params = build_model(cfg, len(data.vocab))
    train_set, valid_set = datasets_for(cfg, data, place)
    # optim.decay_steps=auto: the whole run, epochs x steps per epoch (data: optim hook)
    total_steps = cfg.train.epochs * train_set.steps_per_epoch(epoch_batch(cfg, train_set))
    steps = make_steps(dataclasses.replace(cfg, optim=resolved(cfg.optim, total_steps)),
                       graphdef, take_fn(train_set))
    state = init_state(params, steps.tx, dropout_key(cfg))
    ckpt = (Checkpointer(run_dir / "checkpoints", keep=cfg.train.keep_checkpoints)
            if jax.process_index() == 0 else FollowerCheckpointer(main_dir / "checkpoints"))
    pos = Position()
    try:
        got = restore(cfg, run_dir, data, ckpt, state_tree(state)) if resuming else None
    except BaseException:
        ckpt.close()
        raise
    if got is not None:
        tree, pos = got
        tree = jax.tree.map(jnp.asarray, tree)
        state = TrainState(params=tree["params"], opt_state=tree["opt_state"],
                           step=tree["step"], key=tree["key"])
    if resuming:
        pos.wandb_id = pos.wandb_id or wandb_id_in(run_dir)
    writer = RunWriter(cfg, run_dir, data, ckpt=ckpt, pos=pos if resuming else None,
                       restored=got is not None)
    try:
        if on_start is not None:
            on_start()
        with StopSignals() as stop:
            faults.reached("start")
            training = _Training(cfg, steps, train_set, valid_set, writer, stop, t_start)
            training.on_epoch = on_epoch
            state, record, pos = training.run(place.replicate(state), pos)
            return writer.finish(state, steps, record, pos.record.get("epochs", pos.epoch),
                                 pos.train_seconds, pos.wall_seconds, pos)
    except BaseException as e:
        writer.fail(e)
        raise


class _Training:
    """The epochs of one run from a :class:`Position`; checkpoints at chunk boundaries."""

    def __init__(self, cfg: Config, steps: Steps, train: Any, valid: Any, writer: "RunWriter",
                 stop: StopSignals, t_start: float):
        self.cfg, self.steps, self.writer, self.stop, self.t_start = cfg, steps, writer, stop, t_start
        self.train, place = train, train.place
        self.n = train.n
        self.bsz = epoch_batch(cfg, train)
        self.spe = train.steps_per_epoch(self.bsz)  # steps per epoch
        self.per_call = (cfg.train.steps_per_call
                         or auto_steps_per_call(self.spe, self.bsz * train.seq_len))
        self.place = place
        self.on_epoch: Callable[[dict, int], None] | None = None
        self.chunk_s, self.read_at = 0.0, None  # a full chunk's measured time (for the budget)
        self.train_dev = train.array
        self.train_eval = Evaluator(steps, train.subset(cfg.train.eval_max_train_samples,
                                                        cfg.seed), cfg.train.eval_batch_size)
        self.valid_eval = (self.train_eval if valid is train
                           else Evaluator(steps, valid, cfg.train.eval_batch_size))

    def _wall(self, pos0: Position) -> float:
        return pos0.wall_seconds + time.perf_counter() - self.t_start

    def _due(self, step: int) -> bool:
        t = self.cfg.train
        return bool((t.checkpoint_every_steps and step - self.saved_step >= t.checkpoint_every_steps)
                    or (t.checkpoint_every_s
                        and time.perf_counter() - self.saved_time >= t.checkpoint_every_s))

    def _save(self, state: TrainState, pos: Position, val_loss: float | None = None) -> None:
        if not _finite(state.params):
            raise TrainingDiverged(f"parameters became NaN or infinite by epoch {pos.epoch + 1}, "
                                   f"step {pos.step}; the last good checkpoint is kept")
        self.writer.save(state, pos, val_loss, per_call=self.per_call, batch_size=self.bsz,
                         steps_per_epoch=self.spe)
        self.saved_step, self.saved_time = pos.step, time.perf_counter()

    def run(self, state: TrainState, pos: Position) -> tuple[TrainState, dict, Position]:
        cfg, budget = self.cfg, self.cfg.train.time_budget_s
        self.saved_step, self.saved_time = pos.step, time.perf_counter()
        pos0, record = pos, pos.record
        done_already = (pos.finished and pos.batch > 0) or (budget and pos.train_seconds >= budget)
        epochs = [] if done_already else range(pos.epoch, cfg.train.epochs)
        with TrainProgress(cfg.train.epochs * self.spe, enabled=cfg.train.progress) as bar:
            if pos.step:
                bar.advance(pos.epoch * self.spe + pos.batch, float("nan"), pos.epoch)
            for epoch in epochs:
                start = pos.batch if epoch == pos.epoch else 0
                running = dict(pos.running) if epoch == pos.epoch else {}
                state, running, done, reason, train_s = self._epoch(
                    state, epoch, start, running, pos, bar)
                step = pos.step + done - start
                if reason == "signal" and done < self.spe:  # saved mid-epoch by _epoch
                    raise self._interrupted(step, epoch + done / self.spe)
                state = jax.block_until_ready(state)
                record = epoch_record(epoch, epoch + done / self.spe, running,
                                      *self._evaluate(state), self.train_eval.oracle,
                                      self.valid_eval.oracle, train_s, self._wall(pos0))
                # the learning rate of the epoch's last step (data: optim hook)
                record["lr"] = current_lr(cfg.optim, state.opt_state, step,
                                          cfg.train.epochs * self.spe)
                self.writer.log(record, step)
                faults.reached("logged")
                if self.on_epoch is not None:
                    self.on_epoch(record, step)
                bar.epoch_done(record)
                if self.stop.signum:  # also a signal that came during evaluation
                    reason = "signal"
                complete = done == self.spe
                last = epoch + 1 == cfg.train.epochs or reason is not None
                val = record.get("val_loss")
                better = val is not None and math.isfinite(val) and (
                    pos.best_val_loss is None or val < pos.best_val_loss)
                # --- optim.schedule=plateau (data: optim hook): lr x optim.plateau_factor after
                # a complete epoch whose val loss is not below the best before it; saved below
                if cfg.optim.schedule == "plateau" and complete:
                    state = state.replace(opt_state=plateau_update(
                        state.opt_state, val if val is not None else math.inf,
                        pos.best_val_loss, cfg.optim.plateau_factor))
                pos = Position(
                    step=step, epoch=epoch + 1 if complete else epoch,
                    batch=0 if complete else done, running={} if complete else running,
                    train_seconds=train_s, wall_seconds=self._wall(pos0), logged=epoch + 1,
                    record=record, best_val_loss=val if better else pos.best_val_loss,
                    best_step=step if better else pos.best_step,
                    finished=last and reason != "signal", wandb_id=pos.wandb_id)
                every = cfg.train.checkpoint_every
                if last or self._due(step) or (every and (epoch + 1) % every == 0):
                    self._save(state, pos, val)
                if reason == "signal":
                    raise self._interrupted(step, epoch + done / self.spe)
                if reason == "budget":
                    break
        pos.wall_seconds = self._wall(pos0)
        return state, record, pos

    def _evaluate(self, state: TrainState) -> tuple[dict, dict]:
        level = self.cfg.framing.token_level
        tm = finalize(self.train_eval(state.params), level)
        vm = tm if self.valid_eval is self.train_eval else finalize(
            self.valid_eval(state.params), level)
        return tm, vm

    def _interrupted(self, step: int, epochs: float) -> Interrupted:
        d = self.writer.run_dir
        return Interrupted(f"stopped by {self.stop.name} at step {step} ({epochs:.4g} epochs); "
                           f"checkpoint saved in {d / 'checkpoints'}; continue with the same "
                           f"command plus resume=true hydra.run.dir={d}",
                           exit_code=128 + (self.stop.signum or 2))

    def _epoch(self, state: TrainState, epoch: int, start: int, total: dict, pos: Position,
               bar: Any):
        """Steps start.. of one epoch in jitted chunks. Reads each chunk's sums only after the
        next is dispatched, so the host never stalls the device; syncs only to checkpoint.
        Returns (state, summed metrics, steps done, stop reason, train seconds so far)."""
        cfg, budget = self.cfg, self.cfg.train.time_budget_s
        order = self.train.epoch_order(self.bsz, cfg.seed, epoch)
        first = pos.step - start  # global step before this epoch's first step
        t0 = time.perf_counter()
        pending, done, reason = None, start, None
        self.read_at = None  # chunk timing restarts after evaluation

        def collect(p) -> None:
            sums, losses, n_steps, a = p
            host = jax.device_get(sums)
            if "first_chunk_seconds" not in self.writer.timings:  # this process's first chunk
                self.writer.timings.update(first_chunk_seconds=time.perf_counter() - self.t_start,
                                           first_chunk_steps=n_steps)
            for k, v in host.items():
                total[k] = total.get(k, 0.0) + float(v)
            losses = np.asarray(losses)
            if not np.all(np.isfinite(losses)):
                bad = int(np.argmin(np.isfinite(losses)))
                raise TrainingDiverged(f"loss became {float(losses[bad])} at epoch {epoch + 1}, "
                                       f"step {first + a + bad + 1}; the last good checkpoint "
                                       f"is kept")
            bar.advance(n_steps, total["loss_sum"] / max(total["weight"], 1e-12), epoch)

        for a, b in batches.chunk_bounds(len(order), self.per_call):
            if a < start:
                continue
            state, sums, losses = self.steps.train_chunk(state, self.train_dev,
                                                         self.place.rows(order[a:b]))
            faults.reached("chunk")
            done = b
            if pending is not None:
                full = pending[2] == self.per_call
                collect(pending)
                now = time.perf_counter()
                if self.read_at is not None and full:
                    self.chunk_s = now - self.read_at  # the device ran one full chunk meanwhile
                self.read_at = now
            pending = (sums, losses, b - a, a)
            train_s = pos.train_seconds + time.perf_counter() - t0
            if self.stop.signum:
                reason = "signal"
            elif budget and train_s + 2 * self.chunk_s >= budget:
                # the chunk just dispatched ends ~chunk_s from now; one more would cross the
                # budget, so stop after this one: training time stays within the budget
                reason = "budget"
            if b < len(order) and (reason == "signal" or (not reason and self._due(first + b))):
                collect(pending)
                pending, self.read_at = None, None
                self._save(state, Position(
                    step=first + b, epoch=epoch, batch=b, running=dict(total),
                    train_seconds=pos.train_seconds + time.perf_counter() - t0,
                    wall_seconds=pos.wall_seconds + time.perf_counter() - self.t_start,
                    logged=epoch, record=pos.record, best_val_loss=pos.best_val_loss,
                    best_step=pos.best_step, wandb_id=pos.wandb_id))
            if reason:
                break
        if pending is not None:
            collect(pending)
        state = jax.block_until_ready(state)
        return state, total, done, reason, pos.train_seconds + time.perf_counter() - t0


def epoch_record(epoch: int, epochs_done: float, running: dict, tm: dict, vm: dict,
                 oracle_train: float, oracle_val: float, train_seconds: float,
                 wall: float) -> dict:
    """One line of metrics.jsonl from the epoch's running sums and finalized train/val metrics."""
    rec: dict[str, Any] = {"epoch": epoch + 1, "epochs": epochs_done}
    rec["train_running_loss"] = float(running["loss_sum"] / max(running["weight"], 1e-12))
    rec.update({f"train_{k}": v for k, v in tm.items()})
    rec["oracle_train_accuracy"] = oracle_train
    rec.update({f"val_{k}": v for k, v in vm.items()})
    rec["oracle_val_accuracy"] = oracle_val
    rec["train_seconds"] = train_seconds
    rec["wall_seconds"] = wall
    return rec
