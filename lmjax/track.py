"""Trackers: where metrics go. ``metrics.jsonl`` always; W&B when configured; closed in ``finally``.

W&B runs online when an API key is configured (``WANDB_API_KEY`` or a ``wandb login``) and
offline otherwise, so a missing network never blocks or fails a run; ``logger=none`` or
``logger.mode=disabled`` turns it off. Offline runs can be uploaded later with ``wandb sync``.

A resumed run continues the same W&B run (same id, ``resume="allow"``) and first cuts
``metrics.jsonl`` back to the epochs its checkpoint had logged, so no epoch appears twice.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from lmjax.config import LoggerConfig


class Tracker(Protocol):
    def log(self, metrics: dict[str, Any], step: int) -> None: ...
    def summary(self, summary: dict[str, Any]) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...


def _clean(v: Any) -> Any:
    """JSON-safe numbers: NaN and inf become null (JSON has no literal for them)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def truncate_metrics(path: Path, keep_epochs: int) -> int:
    """Keep the rows of epochs 1..keep_epochs of a metrics.jsonl (and drop a half-written last
    line); the file is replaced atomically. Returns the number of rows kept."""
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and \
                row["epoch"] <= keep_epochs:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
    tmp.replace(path)
    return len(kept)


class JsonlTracker:
    """One JSON object per log call in ``metrics.jsonl`` (appended, flushed each line).

    ``keep_epochs`` (a resumed run): first cut the file back to those epochs.
    """

    def __init__(self, path: Path, keep_epochs: int | None = None):
        if keep_epochs is not None:
            truncate_metrics(path, keep_epochs)
        elif path.exists():
            path.unlink()  # a new run never appends to an old file
        self._f = open(path, "a", encoding="utf-8")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def summary(self, summary: dict[str, Any]) -> None:
        pass  # summary.json is written by the loop

    def finish(self, exit_code: int = 0) -> None:
        if not self._f.closed:
            self._f.close()


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def wandb_mode(cfg: LoggerConfig) -> str:
    """The W&B mode a run uses: WANDB_MODE wins, then logger.mode (auto = key ? online : offline)."""
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if cfg.mode != "auto":
        return cfg.mode
    return "online" if _has_wandb_key() else "offline"


class WandbTracker:
    def __init__(self, cfg: LoggerConfig, run_dir: Path, name: str, config: dict,
                 run_id: str | None = None):
        import wandb

        self.mode = wandb_mode(cfg)

        def init(mode: str) -> Any:
            return wandb.init(
                project=cfg.project, entity=cfg.entity, group=cfg.group,
                tags=list(cfg.tags) or None, name=name, config=config, dir=str(run_dir),
                mode=mode, id=run_id, resume="allow" if run_id else None,
                reinit="finish_previous",
                settings=wandb.Settings(console="off", x_disable_stats=True, silent=True,
                                        init_timeout=float(os.environ.get(
                                            "LMJAX_WANDB_INIT_TIMEOUT", 20))))

        try:
            self.run = init(self.mode)
        except Exception as e:  # noqa: BLE001 - no network must never fail a run
            if self.mode != "online":
                raise
            msg = (str(e).splitlines() or [type(e).__name__])[0][:160]
            print(f"lmjax: W&B could not go online ({msg}); logging offline instead "
                  f"(upload later with `wandb sync {run_dir / 'wandb'}/offline-run-*`)",
                  file=sys.stderr, flush=True)
            self.mode = "offline"
            self.run = init("offline")
        self.run_id = self.run.id if self.run is not None else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log(metrics, step=step)

    def summary(self, summary: dict[str, Any]) -> None:
        for k, v in summary.items():
            if isinstance(v, (int, float, str, bool)):
                self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


class Trackers:
    """Fan-out to several trackers; ``finish`` closes each even if one fails."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for t in self.trackers:
            t.log(metrics, step)

    def summary(self, summary: dict[str, Any]) -> None:
        for t in self.trackers:
            t.summary(summary)

    def finish(self, exit_code: int = 0) -> None:
        errors = []
        for t in self.trackers:
            try:
                t.finish(exit_code)
            except Exception as e:  # noqa: BLE001 - keep closing the others
                errors.append(e)
        if errors:
            raise errors[0]

    @property
    def wandb_run_id(self) -> str | None:
        for t in self.trackers:
            if isinstance(t, WandbTracker):
                return t.run_id
        return None


def make_trackers(cfg: LoggerConfig, run_dir: Path, name: str, config: dict,
                  wandb_id: str | None = None, keep_epochs: int | None = None) -> Trackers:
    """metrics.jsonl (+ W&B). ``wandb_id`` resumes that W&B run; ``keep_epochs`` (resume) cuts
    metrics.jsonl back to the epochs 1..keep_epochs instead of starting it afresh."""
    trackers: list[Tracker] = [JsonlTracker(run_dir / "metrics.jsonl", keep_epochs)]
    if cfg.name == "wandb" and wandb_mode(cfg) != "disabled":
        trackers.append(WandbTracker(cfg, run_dir, name, config, wandb_id))
    return Trackers(trackers)
