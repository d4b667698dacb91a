"""The files of one run dir: config.yaml, vocab.json, metrics.jsonl (+ W&B), checkpoints/,
samples.txt and summary.json (see results/README.md). Used by ``loop.run`` and by
``multiseed.run_seeds`` (one writer per seed).

End-of-run samples come from a ``samples`` callback the entry point passes in
(``lmjax.infer.samples.run_samples``): this floor does not import inference.

A run that ends far worse than a uniform guess is recorded as diverged
(:func:`divergence`)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import Config
from lmjax.data.vocab import Vocab
from lmjax.errors import Interrupted, Pruned
from lmjax.train import faults
from lmjax.train.checkpoint import Checkpointer
from lmjax.train.heldout import SUM_KEYS, finalize_heldout, heldout_word_sums
from lmjax.train.parallel import allgather_json, local_copy
from lmjax.train.resume import Position
from lmjax.train.step import Steps, TrainState
from lmjax.train.testset import has_test, score_test
from lmjax.track import make_trackers

log = logging.getLogger("lmjax.train")

# (cfg, predict: inputs (B, T) -> log-probabilities (B, V), vocab, width, run_dir) -> samples
SamplesFn = Callable[[Config, Callable[[np.ndarray], np.ndarray], Vocab, int, Path], list]

# A run is "diverged" when its final training loss is above this many times ln(V), the loss of
# a uniform guess over the V tokens (see divergence()).
DIVERGED_FACTOR = 1.5


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    tmp.replace(path)


class RunWriter:
    """The files of one run dir: config.yaml, vocab.json, metrics.jsonl (+ W&B), checkpoints/,
    samples.txt and summary.json. ``pos`` (a resumed run) keeps its W&B id and metrics rows."""

    def __init__(self, cfg: Config, run_dir: Path, data: Any, *,
                 ckpt: Checkpointer | None = None, pos: Position | None = None,
                 restored: bool = False, samples: SamplesFn | None = None):
        self.cfg, self.run_dir, self.data = cfg, Path(run_dir), data
        self.samples = samples  # None: no samples (library use without inference)
        self.timings: dict = {}  # first_chunk_seconds/_steps, filled in by the training loop
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not restored:  # a restored run's vocab.json was checked against the checkpoint
            data.vocab.save(self.run_dir / "vocab.json")
        _write_config(cfg, self.run_dir)
        self.ckpt = ckpt or Checkpointer(self.run_dir / "checkpoints",
                                         keep=cfg.train.keep_checkpoints)
        self.trackers = make_trackers(cfg.logger, self.run_dir, cfg.name, cfg.to_dict(),
                                      pos.wandb_id if pos else None,
                                      pos.logged if pos else None,
                                      # each epoch's record carries its learning rate ("lr")
                                      tokens_per_epoch=data.num_train * data.train.seq_len)
        self.wandb_id = self.trackers.wandb_run_id or (pos.wandb_id if pos else None)

    def log(self, record: dict, step: int) -> None:
        self.trackers.log(record, step=step)

    def save(self, state: TrainState, pos: Position, val_loss: float | None = None,
             **extra: Any) -> None:
        pos.wandb_id = self.wandb_id
        vocab = self.data.vocab
        shards = self.data.shards.num_shards if self.data.shards else 0
        order = ("lanes of consecutive rows from a default_rng([seed, epoch])-drawn offset"
                 if self.cfg.framing.carry_state else "numpy default_rng([seed, epoch])"
                 ".permutation")
        if shards:
            order = f"{order}, per shard (seed, epoch, shard)"
        meta = pos.meta(seq_len=int(self.data.train.inputs.shape[1]), vocab_size=len(vocab),
                        vocab_sha256=vocab.sha256(), corpus_sha256=self.data.text_sha256,
                        config_hash=self.cfg.resume_fingerprint(),
                        training_hash=self.cfg.fingerprint(), seed=self.cfg.seed,
                        data_order=order, data_shards=shards, **extra)
        self.ckpt.save(pos.step, state_tree(state), meta, val_loss)

    def latest_checkpoint(self) -> str:
        """What a stop keeps, in words: "the last good checkpoint (step N) is kept in DIR" or
        "no checkpoint was written"."""
        try:
            step = self.ckpt.latest_step()
        except Exception:  # noqa: BLE001 - only for a message
            step = None
        if step is None:
            return "no checkpoint was written"
        return f"the last good checkpoint (step {step}) is kept in {self.ckpt.directory}"

    def finish(self, state: TrainState, steps: Steps, record: dict, epochs_done: float,
               train_seconds: float, wall: float, pos: Position | None = None) -> dict:
        """Final checkpoint (unless saved), samples.txt, summary.json; closes the trackers."""
        cfg, data = self.cfg, self.data
        step = int(state.step)
        if pos is None:
            pos = Position(step=step, epoch=int(math.ceil(epochs_done)), logged=int(epochs_done),
                           record=record, train_seconds=train_seconds, wall_seconds=wall,
                           finished=True)
        self.save(state, pos, selection_loss(record))
        test = self._test_metrics(state, steps, pos)  # before close: may restore the best
        self.ckpt.close()
        n, t_len = data.num_train, data.train.seq_len
        # inference below runs on this process's own copy of the (replicated) parameters, so
        # processes that score different shards never wait on one another
        state = state.replace(params=local_copy(state.params))
        samples = self._samples(steps, state, t_len)
        (self.run_dir / "samples.txt").write_text("\n".join(samples) + "\n")
        faults.reached("summary")
        level = cfg.framing.token_level
        summary = {
            "status": "completed", "name": cfg.name, "framing": cfg.framing.label, "level": level,
            "corpus": cfg.data.name if cfg.data.name != "file" else cfg.data.path,
            "corpus_types": data.corpus_types, "vocab_size": len(data.vocab), "num_sequences": n,
            "num_val_sequences": data.num_valid, "seq_len": t_len,
            "params": sum(x.size for x in jax.tree.leaves(state.params)),
            "hidden_size": cfg.model.hidden_size, "seed": cfg.seed,
            "epochs": epochs_done, "steps": step, "batch_size": min(cfg.train.batch_size, n),
            **{k: v for k, v in record.items() if k.startswith(("train_", "val_", "oracle_"))},
            "val_oov_rate": data.val_oov_rate,  # val targets scored as <unk> (docs/metrics.md)
            "wall_seconds": wall, "train_seconds": train_seconds,
            "tokens_per_second": epochs_done * n * t_len / max(train_seconds, 1e-9),
            "best_val_loss": pos.best_val_loss, "best_step": pos.best_step,
            **self.timings, "samples": samples, **test,
        }
        # every word model scored on the same held-out words, each with its framing's context
        # (sharded: each process scores its shards' text and the sums are added up)
        parts = [heldout_word_sums(lambda x: steps.predict(state.params, jnp.asarray(x)), cfg,
                                   data.vocab, text, t_len) for text in data.heldout_texts]
        if data.shards is not None:
            parts = [p for proc in allgather_json(parts) for p in proc]
            summary["data_shards"] = data.shards.report()
        summary.update(finalize_heldout({k: sum(p.get(k, 0) for p in parts)
                                         for k in SUM_KEYS}))
        reason = divergence(record, len(data.vocab))
        if reason:
            summary.update(status="diverged", reason=reason)
            log.warning("diverged: %s", reason)
        _write_json(self.run_dir / "summary.json", summary)
        self.trackers.summary(summary)
        self.trackers.finish()
        return summary

    def has_test(self) -> bool:
        return has_test(self.cfg)

    def _test_metrics(self, state: TrainState, steps: Steps, pos: Position) -> dict:
        """``test_*`` of the best-validation checkpoint (:func:`lmjax.train.testset.score_test`)."""
        def restore_params(step: int) -> Any:
            tree, _ = self.ckpt.restore(state_tree(state), step)
            return jax.tree.map(jnp.asarray, tree["params"])

        return score_test(self.cfg, self.data, state, steps, pos, self.ckpt.all_steps(),
                          restore_params)

    def _samples(self, steps: Steps, state: TrainState, width: int) -> list[str]:
        if self.samples is None:
            return []

        def predict(x: np.ndarray) -> np.ndarray:
            return np.asarray(steps.predict(state.params, jnp.asarray(x)))

        return list(self.samples(self.cfg, predict, self.data.vocab, width, self.run_dir))

    def fail(self, e: BaseException) -> None:
        """summary.json says failed (or interrupted); W&B closed; checkpoints left as they are."""
        interrupted = isinstance(e, (Interrupted, KeyboardInterrupt))
        try:
            last_step = self.ckpt.latest_step()
        except Exception:  # noqa: BLE001 - the summary matters more than this field
            last_step = None
        status = "pruned" if isinstance(e, Pruned) else (
            "interrupted" if interrupted else "failed")
        info = {"status": status,
                "error": f"{type(e).__name__}: {e}", "framing": self.cfg.framing.label,
                "name": self.cfg.name, "last_checkpoint_step": last_step}
        try:
            self.ckpt.close()
        finally:
            try:
                self.trackers.finish(exit_code=getattr(e, "exit_code", 1))
            finally:
                _write_json(self.run_dir / "summary.json", info)


def selection_loss(record: dict) -> float | None:
    """The validation loss that picks the best checkpoint and steps the plateau schedule: the
    carried validation where the loop computes it (framing.carry_state: the text read as the
    model trains on it, the reference's way), the block-wise ``val_loss`` otherwise."""
    return record.get("val_carried_loss", record.get("val_loss"))


def divergence(record: dict, vocab_size: int) -> str | None:
    """Why a finished run counts as diverged, or None.

    The rule: the final training loss (the model evaluated on its own training text at the
    end) is above ``DIVERGED_FACTOR`` x ln(V). ln(V) is what a uniform guess over the V tokens
    scores, and about where an untrained model starts; training that works ends below it, so
    a model 50% worse than knowing nothing has been made confidently wrong (a learning rate
    too high, typically). The training loss, not the validation loss, decides: a model that
    overfits a small corpus can end with a high validation loss while it fits its training
    text well, and that is not divergence."""
    loss = record.get("train_loss")
    if loss is None or vocab_size < 2:
        return None
    from lmjax.fmt import num

    uniform = math.log(vocab_size)
    if not loss > DIVERGED_FACTOR * uniform:  # NaN stops earlier (TrainingDiverged)
        return None
    val = record.get("val_loss")
    also = f", validation loss {num(val)}" if val is not None else ""
    return (f"final training loss {num(loss)}{also}: above {DIVERGED_FACTOR:g} x ln(V) = "
            f"{num(DIVERGED_FACTOR * uniform)} (a uniform guess over the {vocab_size} tokens "
            f"scores ln(V) = {num(uniform)}); lower optim.lr or optim.clip_norm")


def state_tree(state: TrainState) -> dict:
    """What a checkpoint's ``state`` item holds; ``lstm`` (framing.carry_state) only when set."""
    tree = {"params": state.params, "opt_state": state.opt_state, "step": state.step,
            "key": state.key}
    if state.lstm is not None:
        tree["lstm"] = state.lstm
    return tree


def _write_config(cfg: Config, run_dir: Path) -> None:
    from omegaconf import OmegaConf

    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg.to_dict())))
