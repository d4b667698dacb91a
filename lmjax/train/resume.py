"""Run directories that survive: refuse, replace or resume an existing run; restore exactly.

:func:`open_run_dir` decides, before anything is written, what to do with ``run_dir``:

* no ``config.yaml`` there: a new run (``resume=true`` is refused: nothing to resume);
* the same config (up to ``RESUME_FREE_KEYS``: epochs, time budget, name, logging, samples):
  the run is resumed from its latest checkpoint, or restarted when it has none;
* a different config: refused, unless ``overwrite=true`` (then the old run's files are deleted).

:func:`restore` loads the latest checkpoint and checks it against the config and vocabulary.
A checkpoint's ``meta`` (:class:`Position`) says where in the data order training stopped; the
order of each epoch is a function of (seed, epoch) and dropout keys are ``fold_in(key, step)``,
so a resumed run computes bit for bit what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmjax.config import Config, resume_relevant
from lmjax.data.vocab import Vocab
from lmjax.errors import CheckpointError
from lmjax.train.checkpoint import Checkpointer

META_FORMAT = "lmjax-checkpoint-2"
RUN_FILES = ("config.yaml", "vocab.json", "metrics.jsonl", "samples.txt", "summary.json")


@dataclass
class Position:
    """Where a run stands; saved as the checkpoint's metadata (JSON)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # index of the epoch in progress (= epochs completed)
    batch: int = 0  # steps of that epoch already taken
    running: dict[str, float] = field(default_factory=dict)  # their metric sums (host floats)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    logged: int = 0  # metrics.jsonl rows (epochs 1..logged) that belong to this state
    record: dict[str, Any] = field(default_factory=dict)  # the last epoch's metrics
    best_val_loss: float | None = None
    best_step: int | None = None
    finished: bool = False  # training ended (epochs done or time budget spent)
    wandb_id: str | None = None

    def meta(self, **extra: Any) -> dict[str, Any]:
        return {"format": META_FORMAT, **dataclasses.asdict(self), **extra}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Position":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in names})


def _config_diff(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    a, b = resume_relevant(old), resume_relevant(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    parts = [f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}" for k in keys[:limit]]
    return ", ".join(parts) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _wipe(run_dir: Path) -> None:
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def open_run_dir(cfg: Config, run_dir: Path) -> bool:
    """Check ``run_dir`` against ``cfg``; True when the run there is to be resumed."""
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        if cfg.resume:
            raise CheckpointError(f"resume=true, but {run_dir} holds no lmjax run (no "
                                  f"config.yaml); point hydra.run.dir=... at the run to resume")
        return False
    try:
        old = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise CheckpointError(f"cannot read {cfg_file} ({str(e).splitlines()[0]}); fix it, or "
                              f"add overwrite=true to start the run over") from None
    diff = _config_diff(old, cfg.to_dict())
    if cfg.overwrite:
        _wipe(run_dir)
        return False
    if diff and cfg.resume:
        raise CheckpointError(f"cannot resume {run_dir}: the config differs from the run's "
                              f"({diff}); resume with the same settings")
    if diff:
        raise CheckpointError(f"{run_dir} already holds a run with a different config ({diff}); "
                              f"choose another hydra.run.dir, or add overwrite=true to replace it")
    return True


def restore(cfg: Config, run_dir: Path, data: Any, ckpt: Checkpointer,
            template: Any) -> tuple[Any, Position] | None:
    """(state tree, position) of the latest checkpoint in ``run_dir``, checked against the
    config, vocab.json and the corpus (``data``: loop.Prepared); None if there is none."""
    if ckpt.latest_step() is None:
        return None
    tree, meta = ckpt.restore(template)
    where = ckpt.directory / str(ckpt.latest_step())
    if meta.get("format") != META_FORMAT:
        raise CheckpointError(f"checkpoint {where} has format {meta.get('format')!r}, not "
                              f"{META_FORMAT!r}; it cannot be resumed (load_run still reads it)")
    if meta.get("config_hash") != cfg.resume_fingerprint():
        raise CheckpointError(f"checkpoint {where} was written with another config than "
                              f"{run_dir / 'config.yaml'} says; was config.yaml edited?")
    saved = Vocab.load(run_dir / "vocab.json")
    if saved.sha256() != meta.get("vocab_sha256"):
        raise CheckpointError(f"{run_dir / 'vocab.json'} does not match the vocabulary the "
                              f"checkpoint was trained with; was it edited?")
    shards = data.shards.num_shards if data.shards else 0
    if int(meta.get("data_shards", 0)) != shards:
        def say(k: int) -> str:
            return f"{k} data shards" if k else "the whole corpus in every process"
        raise CheckpointError(f"the run in {run_dir} was trained on "
                              f"{say(int(meta.get('data_shards', 0)))}, this one would read "
                              f"{say(shards)}; resume with the same devices and data.shard")
    if data.text_sha256 != meta.get("corpus_sha256"):
        raise CheckpointError(f"the corpus text differs from the one the run in {run_dir} was "
                              f"trained on (sha256 {data.text_sha256[:12]}..., the checkpoint "
                              f"says {str(meta.get('corpus_sha256'))[:12]}...); did the file "
                              f"change?")
    if data.vocab.sha256() != meta.get("vocab_sha256"):  # implied by the above; kept as a check
        raise CheckpointError(f"the corpus gives another vocabulary than the one {run_dir} was "
                              f"trained with; did the corpus file change?")
    pos = Position.from_meta(meta)
    if pos.epoch > cfg.train.epochs or (pos.epoch == cfg.train.epochs and pos.batch > 0):
        raise CheckpointError(f"the run in {run_dir} is past train.epochs={cfg.train.epochs} "
                              f"(checkpoint at epoch {pos.epoch}, step {pos.step})")
    return tree, pos


def wandb_id_in(run_dir: Path) -> str | None:
    """The id of the last W&B run in ``run_dir/wandb`` (for runs killed before a checkpoint)."""
    link = run_dir / "wandb" / "latest-run"
    try:
        target = os.readlink(link) if link.is_symlink() else None
    except OSError:
        return None
    return Path(target).name.rsplit("-", 1)[-1] if target else None
