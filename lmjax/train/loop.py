"""The training loop: data -> model -> epochs of jitted chunks -> eval -> trackers -> run dir.

``run(cfg, run_dir)`` is everything ``python -m experiments.run`` does after Hydra composed the
config. It writes into ``run_dir``: config.yaml, vocab.json, metrics.jsonl (one line per epoch),
samples.txt, summary.json and checkpoints/ (orbax).

Training runs in jitted chunks of steps, sized by time (``chunking.py``: about
``train.chunk_seconds`` between two host checks); how it is cut does not change what it computes
(``step.py``). Between chunks the host reads the losses (one chunk behind the device), logs
progress (``progress.py``), and checks for a stop, a checkpoint due and the time budget.

Runs survive: checkpoints are written at chunk boundaries (every ``train.checkpoint_every_s``
seconds, ``train.checkpoint_every_steps`` steps or ``train.checkpoint_every`` epochs, and at
the end); an existing run dir with the same config is resumed from its latest checkpoint
(``resume.py``) and continues bit for bit; SIGTERM / Ctrl-C save a checkpoint and exit; a NaN
loss stops the run without saving the bad state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmjax.config import Config
from lmjax.data.framings import Framed
from lmjax.errors import ConfigError, Interrupted, TrainingDiverged
from lmjax.model.lm import LanguageModel
from lmjax.train import faults
from lmjax.train.checkpoint import Checkpointer, FollowerCheckpointer
from lmjax.train.chunking import ChunkSizer, step_flops
from lmjax.train.datasets import ReplicatedData, ShardedData, take_fn
from lmjax.train.epoch import ChunkedEpoch
from lmjax.train.metrics import finalize
from lmjax.train.optim import current_lr, make_optimizer, plateau_update, resolved
from lmjax.train.parallel import Placement, process_run_dir, select_devices
from lmjax.train.prepare import Prepared, prepare, prepare_data
from lmjax.train.progress import TrainProgress
from lmjax.train.resume import Position, open_run_dir, restore, wandb_id_in
from lmjax.train.signals import StopSignals
from lmjax.train.step import Steps, TrainState, init_state, zero_lstm
from lmjax.train.writer import RunWriter, SamplesFn, selection_loss, state_tree

log = logging.getLogger("lmjax.train")

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


# Lanes of the carried validation (framing.carry_state), as PyTorch's word_language_model
# evaluates (its eval_batch_size of 10 columns)
VAL_LANES = 10


class CarriedEvaluator:
    """framing.carry_state: validation metric sums with the LSTM state carried through the
    validation text. Its blocks (consecutive, framing.step=0) are laid out as ``lanes``
    columns of consecutive blocks (lane j: blocks j*S .. (j+1)*S - 1, S = ceil(n / lanes), the
    tail padded), each lane one stream from a zero state, so every target is predicted from
    everything before it in its lane (``val_carried_*``, docs/metrics.md)."""

    def __init__(self, steps: Steps, dataset: Any, lanes: int = VAL_LANES):
        size = dataset.place.size
        n = dataset.n
        lanes = -(-min(lanes, n) // size) * size  # a multiple of the device count
        per = -(-n // lanes)
        ids = np.arange(lanes)[None, :] * per + np.arange(per)[:, None]
        self.idx = jnp.asarray(np.where(ids < n, ids, n).astype(np.int32))  # row n: padding
        self.steps, self.data, self.lanes = steps, dataset.array, lanes

    def __call__(self, params: Any) -> dict:
        h = zero_lstm(self.steps.graphdef, params, self.lanes)
        return self.steps.eval_carried(params, self.data, self.idx, h)


def auto_steps_per_call(steps_per_epoch: int, tokens_per_step: int) -> int:
    """A fixed fusion by token count (~100k tokens, capped at 200 steps), for code that cuts
    training into equal chunks without timing them (the benchmarks, parallel seeds, and jobs of
    several processes, which must all run the same chunk sizes); a single process sizes its
    chunks by time instead (``chunking.ChunkSizer``)."""
    return max(1, min(steps_per_epoch, 200, math.ceil(100_000 / tokens_per_step)))


def batch_rows(cfg: Config, train: Any) -> int:
    """The training batch: a corpus smaller than one batch trains in one (padded) batch, split
    over the devices."""
    size = train.place.size
    return min(cfg.train.batch_size, -(-train.n // size) * size)


def _finite(tree: Any) -> bool:
    """On the host (the checkpoint copies the arrays there anyway): no op to compile, so the
    first save after a stop request does not wait for XLA."""
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def run(cfg: Config, run_dir: str | Path,
        on_epoch: Callable[[dict, int], None] | None = None,
        on_start: Callable[[], None] | None = None,
        samples: SamplesFn | None = None) -> dict:
    """Train one model as configured (or resume the run in ``run_dir``); returns the summary
    (also written to summary.json).

    ``on_epoch(record, step)``, if given, is called after each epoch's metrics are logged (a
    hyperparameter search reports them to its pruner); an exception it raises (e.g.
    :class:`lmjax.errors.Pruned`) ends the run like any failure, with the metrics so far kept.
    ``on_start()``, if given, is called once the run dir is accepted, before training.
    ``samples`` makes the end-of-run samples (samples.txt; ``lmjax.infer.samples.run_samples``,
    which the entry points pass); without it none are made."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    place = Placement(select_devices(cfg.train.devices))
    place.check_batch(cfg.train.batch_size)
    data = prepare(cfg, place)  # bad input fails here, before anything is written
    if cfg.train.epoch_eval == "carried" and data.shards is not None:
        raise ConfigError("train.epoch_eval=carried: sharded data (data.shard) has no carried "
                          "validation, a lane would cross shards; use train.epoch_eval=all")
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
    bsz = batch_rows(cfg, train_set)
    # optim.decay_steps=auto: the whole run, epochs x steps per epoch
    total_steps = cfg.train.epochs * train_set.steps_per_epoch(bsz)
    steps = make_steps(dataclasses.replace(cfg, optim=resolved(cfg.optim, total_steps)),
                       graphdef, take_fn(train_set))
    lstm = zero_lstm(graphdef, params, bsz) if cfg.framing.carry_state else None
    state = init_state(params, steps.tx, dropout_key(cfg), lstm)
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
                           step=tree["step"], key=tree["key"], lstm=tree.get("lstm"))
    if resuming:
        pos.wandb_id = pos.wandb_id or wandb_id_in(run_dir)
        if got is None:
            log.info("%s holds no checkpoint yet: starting the run over", run_dir)
    writer = RunWriter(cfg, run_dir, data, ckpt=ckpt, pos=pos if resuming else None,
                       restored=got is not None, samples=samples)
    try:
        if on_start is not None:
            on_start()
        with StopSignals() as stop:
            faults.reached("start")
            training = _Training(cfg, steps, train_set, valid_set, writer, stop, t_start)
            training.on_epoch = on_epoch
            if got is not None:
                log.info("%s", training.resumed_line(pos))
            state, record, pos = training.run(place.replicate(state), pos)
            return writer.finish(state, steps, record, pos.record.get("epochs", pos.epoch),
                                 pos.train_seconds, pos.wall_seconds, pos)
    except BaseException as e:
        writer.fail(e)
        raise


class _Training:
    """The epochs of one run from a :class:`Position`; checkpoints at chunk boundaries.

    ``run`` walks the epochs and ends each (evaluation, logging, checkpoint: ``_end_epoch``);
    an epoch's steps run in :class:`lmjax.train.epoch.ChunkedEpoch`."""

    def __init__(self, cfg: Config, steps: Steps, train: Any, valid: Any, writer: "RunWriter",
                 stop: StopSignals, t_start: float):
        self.cfg, self.steps, self.writer, self.stop, self.t_start = cfg, steps, writer, stop, t_start
        self.train, self.place = train, train.place
        self.bsz = batch_rows(cfg, train)
        self.spe = train.steps_per_epoch(self.bsz)  # steps per epoch
        m = cfg.model
        flops = step_flops(m.embed_size, m.hidden_size, m.num_layers,
                           len(writer.data.vocab), self.bsz, train.seq_len,
                           cfg.framing.last_only) / self.place.size
        fixed = cfg.train.steps_per_call
        if not fixed and jax.process_count() > 1:  # every process must run the same programs
            fixed = auto_steps_per_call(self.spe, self.bsz * train.seq_len)
        self.sizer = ChunkSizer(cfg.train.chunk_seconds, self.spe, flops, fixed=fixed)
        self.on_epoch: Callable[[dict, int], None] | None = None
        self.chunks = ChunkedEpoch(cfg, steps, train, self.bsz, self.sizer, stop, t_start,
                                   writer.timings, self._due, self._save,
                                   writer.latest_checkpoint)
        # train.epoch_eval=carried: neither the training subset nor the validation blocks
        self.train_eval = self.valid_eval = None
        if cfg.train.epoch_eval == "all":
            self.train_eval = Evaluator(steps, train.subset(cfg.train.eval_max_train_samples,
                                                            cfg.seed), cfg.train.eval_batch_size)
            self.valid_eval = (self.train_eval if valid is train
                               else Evaluator(steps, valid, cfg.train.eval_batch_size))
        # carried validation: not for sharded data (a lane would cross shards)
        self.carried_eval = (CarriedEvaluator(steps, valid)
                             if cfg.framing.carry_state and not valid.sharded else None)

    def resumed_line(self, pos: Position) -> str:
        if pos.finished:
            return (f"resumed from step {pos.step}, epoch {pos.record.get('epoch', pos.epoch)}:"
                    f" training had finished")
        part = f" ({pos.batch} of its {self.spe} steps done)" if pos.batch else ""
        return f"resumed from step {pos.step}, epoch {pos.epoch + 1}{part}"

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
                                   f"step {pos.step}; {self.writer.latest_checkpoint()}")
        self.writer.save(state, pos, val_loss, per_call=self.sizer.size, batch_size=self.bsz,
                         steps_per_epoch=self.spe)
        self.saved_step, self.saved_time = pos.step, time.perf_counter()

    def _bar(self, pos: Position) -> TrainProgress:
        t = self.cfg.train
        r = pos.running
        loss = r["loss_sum"] / r["weight"] if r.get("weight") else None
        log.info("training %d epoch(s) of %s steps (batch %d); progress every %gs",
                 t.epochs, f"{self.spe:,}", self.bsz, t.log_every_s)
        return TrainProgress(t.epochs * self.spe, enabled=t.progress,
                             start=pos.epoch * self.spe + pos.batch, epochs=t.epochs,
                             steps_per_epoch=self.spe,
                             tokens_per_step=self.bsz * self.train.seq_len,
                             log_every_s=t.log_every_s, budget_s=t.time_budget_s,
                             train_s0=pos.train_seconds, loss=loss)

    def run(self, state: TrainState, pos: Position) -> tuple[TrainState, dict, Position]:
        cfg, budget = self.cfg, self.cfg.train.time_budget_s
        self.saved_step, self.saved_time = pos.step, time.perf_counter()
        pos0, record = pos, pos.record
        done_already = (pos.finished and pos.batch > 0) or (budget and pos.train_seconds >= budget)
        epochs = [] if done_already else range(pos.epoch, cfg.train.epochs)
        with self._bar(pos) as bar:
            for epoch in epochs:
                start = pos.batch if epoch == pos.epoch else 0
                running = dict(pos.running) if epoch == pos.epoch else {}
                if start == 0 and state.lstm is not None:  # new lanes: the state restarts
                    state = self.steps.reset_lstm(state)
                state, running, done, reason, train_s = self.chunks.run(
                    state, epoch, start, running, pos, bar)
                step = pos.step + done - start
                if reason == "signal" and done < self.spe:  # saved mid-epoch by _epoch
                    raise self._interrupted(step, epoch + done / self.spe)
                state, record, pos, reason = self._end_epoch(
                    state, epoch, done, running, reason, train_s, step, pos, pos0, bar)
                if reason == "signal":
                    raise self._interrupted(step, epoch + done / self.spe)
                if reason == "budget":
                    break
        pos.wall_seconds = self._wall(pos0)
        return state, record, pos

    def _end_epoch(self, state: TrainState, epoch: int, done: int, running: dict,
                   reason: str | None, train_s: float, step: int, pos: Position,
                   pos0: Position, bar: TrainProgress
                   ) -> tuple[TrainState, dict, Position, str | None]:
        """Evaluate, log (metrics.jsonl, trackers, progress, on_epoch), step the plateau
        schedule, checkpoint when due. Returns the state, the epoch's record, the new position
        and the stop reason."""
        cfg = self.cfg
        state = jax.block_until_ready(state)
        record = epoch_record(epoch, epoch + done / self.spe, running, *self._evaluate(state),
                              train_s, self._wall(pos0))
        if self.carried_eval is not None:
            cm = finalize(self.carried_eval(state.params), cfg.framing.token_level)
            record.update({f"val_carried_{k}": v for k, v in cm.items()})
        # the learning rate of the epoch's last step
        record["lr"] = current_lr(cfg.optim, state.opt_state, step, cfg.train.epochs * self.spe)
        self.writer.log(record, step)
        faults.reached("logged")
        if self.on_epoch is not None:
            self.on_epoch(record, step)
        bar.epoch_done(record)
        if self.stop.signum:  # also a signal that came during evaluation
            reason = "signal"
        complete = done == self.spe
        last = epoch + 1 == cfg.train.epochs or reason is not None
        val = selection_loss(record)  # the carried validation where there is one
        better = val is not None and math.isfinite(val) and (
            pos.best_val_loss is None or val < pos.best_val_loss)
        # optim.schedule=plateau: lr x optim.plateau_factor after a complete epoch whose val
        # loss is not below the best before it; the new lr is in the checkpoint saved below
        if cfg.optim.schedule == "plateau" and complete:
            state = state.replace(opt_state=plateau_update(
                state.opt_state, val if val is not None else math.inf, pos.best_val_loss,
                cfg.optim.plateau_factor))
        pos = Position(
            step=step, epoch=epoch + 1 if complete else epoch,
            batch=0 if complete else done, running={} if complete else running,
            train_seconds=train_s, wall_seconds=self._wall(pos0), logged=epoch + 1,
            record=record, best_val_loss=val if better else pos.best_val_loss,
            best_step=step if better else pos.best_step,
            finished=last and reason != "signal", wandb_id=pos.wandb_id)
        every = cfg.train.checkpoint_every
        # a run with a test split keeps its best-validation checkpoint: the test metrics
        # score it at the end (RunWriter.finish)
        keep_best = better and self.writer.has_test()
        if last or keep_best or self._due(step) or (every and (epoch + 1) % every == 0):
            self._save(state, pos, val)
        return state, record, pos, reason

    def _evaluate(self, state: TrainState) -> tuple[dict, dict, float | None, float | None]:
        """The train and (block-wise) validation metrics and their oracles; empty and None
        with train.epoch_eval=carried."""
        if self.train_eval is None or self.valid_eval is None:  # both or neither
            return {}, {}, None, None
        level = self.cfg.framing.token_level
        tm = finalize(self.train_eval(state.params), level)
        vm = tm if self.valid_eval is self.train_eval else finalize(
            self.valid_eval(state.params), level)
        return tm, vm, self.train_eval.oracle, self.valid_eval.oracle

    def _interrupted(self, step: int, epochs: float) -> Interrupted:
        d = self.writer.run_dir
        return Interrupted(f"stopped by {self.stop.name} at step {step} ({epochs:.4g} epochs); "
                           f"checkpoint saved in {d / 'checkpoints'}; continue with the same "
                           f"command plus resume=true hydra.run.dir={d}",
                           exit_code=128 + (self.stop.signum or 2))


def epoch_record(epoch: int, epochs_done: float, running: dict, tm: dict, vm: dict,
                 oracle_train: float | None, oracle_val: float | None, train_seconds: float,
                 wall: float) -> dict:
    """One line of metrics.jsonl from the epoch's running sums and finalized train/val metrics
    (``tm``/``vm`` empty and the oracles None: left out, as train.epoch_eval=carried does)."""
    rec: dict[str, Any] = {"epoch": epoch + 1, "epochs": epochs_done}
    rec["train_running_loss"] = float(running["loss_sum"] / max(running["weight"], 1e-12))
    rec.update({f"train_{k}": v for k, v in tm.items()})
    if oracle_train is not None:
        rec["oracle_train_accuracy"] = oracle_train
    rec.update({f"val_{k}": v for k, v in vm.items()})
    if oracle_val is not None:
        rec["oracle_val_accuracy"] = oracle_val
    rec["train_seconds"] = train_seconds
    rec["wall_seconds"] = wall
    return rec
