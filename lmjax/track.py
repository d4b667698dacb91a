"""Trackers: where metrics go. ``metrics.jsonl`` always; W&B and/or TensorBoard when configured
(``logger=wandb``, ``logger=tensorboard``, ``logger=[wandb,tensorboard]``); closed in ``finally``.

W&B runs online when an API key is configured (``WANDB_API_KEY`` or a ``wandb login``) and
offline otherwise, so a missing network never blocks or fails a run; ``logger=none`` or
``logger.mode=disabled`` turns it off. Offline runs can be uploaded later with ``wandb sync``.

TensorBoard (:class:`TensorBoardTracker`, written with tensorboardX) gets per-epoch scalars, the
learning rate, tokens/s, the samples as text and an HParams session per run; a sweep's jobs go
to ``<sweep dir>/tensorboard/<job name>/`` so ``tensorboard --logdir <sweep dir>`` shows the sweep
as one HParams table (docs/dashboard.md).

A resumed run continues the same W&B run (same id, ``resume="allow"``) and first cuts
``metrics.jsonl`` back to the epochs its checkpoint had logged, so no epoch appears twice; its
TensorBoard run is cut back to the same last step and then appended to.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from lmjax.config import FramingConfig, LoggerConfig, flat_dict


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


def last_row(path: Path) -> dict:
    """The last complete row of a metrics.jsonl ({} when there is none)."""
    row: dict = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
    return row if isinstance(row, dict) else {}


# --- TensorBoard ----------------------------------------------------------------------------

TB_DIR = "tensorboard"
FLUSH_SECS = 2  # tensorboardX's writer thread flushes this often (its default is 120 s)
EVENTS_GLOB = "events.out.tfevents.*"
# hparams of a single run (a sweep's job records its swept keys instead)
CORE_HPARAMS = ("framing", "data", "model.hidden_size", "optim.name", "optim.lr", "seed")
_SESSION_END_TAG = "_hparams_/session_end_info"
# "framing=two_word,model.hidden_size=16" -> split before each "key=" (values may hold commas)
_NEXT_OVERRIDE = re.compile(r",(?=[+~]*[A-Za-z_][\w.@/-]*=)")


def tensorboard_dir(run_dir: Path, name: str) -> Path:
    """Where a run's TensorBoard run goes: ``<sweep dir>/tensorboard/<job name>/`` for a job of a
    sweep (a run dir beside Hydra's ``multirun.yaml``), else ``<run dir>/tensorboard/``."""
    run_dir = Path(run_dir)
    if name and (run_dir.parent / "multirun.yaml").is_file():
        return run_dir.parent / TB_DIR / safe_run_name(name)
    return run_dir / TB_DIR


def safe_run_name(name: str) -> str:
    """A job name as a folder name: ``framing=two_word,seed=1`` stays as it is; other characters
    become ``_`` and a short hash of the name keeps two such names apart."""
    safe = re.sub(r"[^\w.=,+@-]", "_", name)[:150].lstrip(".") or "_"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:6]
    return safe


def scalar_tag(key: str) -> str | None:
    """A record key as a TensorBoard tag, grouped by section: ``val_loss`` -> ``val/loss``,
    ``oracle_train_accuracy`` -> ``train/oracle_accuracy``; None for the epoch number."""
    fixed = {"epoch": None, "step": None, "epochs": "progress/epochs",
             "lr": "optim/learning_rate", "learning_rate": "optim/learning_rate",
             "tokens_per_second": "speed/tokens_per_second",
             "train_seconds": "time/train_seconds", "wall_seconds": "time/wall_seconds"}
    if key in fixed:
        return fixed[key]
    for prefix, section in (("oracle_train_", "train/oracle_"), ("oracle_val_", "val/oracle_"),
                            ("train_", "train/"), ("val_", "val/"), ("heldout_", "heldout/")):
        if key.startswith(prefix):
            return section + key[len(prefix):]
    return f"run/{key}"


def _hparam_value(value: Any) -> bool | float | str:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return "null" if value is None else str(value)


def hparams_of(name: str, config: dict) -> dict[str, bool | float | str]:
    """A run's HParams: a sweep job's swept keys, read from its name (the job's overrides, e.g.
    ``framing=two_word,model.hidden_size=16``), typed from the config where the key is one of
    its values (a config group such as ``framing`` keeps the chosen name); a run whose name is
    not such a list gets :data:`CORE_HPARAMS`."""
    flat = flat_dict(config)
    parts = _NEXT_OVERRIDE.split(name) if name else []
    if parts and all("=" in p for p in parts):
        out = {}
        for part in parts:
            key, value = part.split("=", 1)
            key = key.lstrip("+~")
            out[key] = _hparam_value(flat[key] if key in flat else value.strip("'\""))
        return out
    core = {k: flat.get(k) for k in CORE_HPARAMS}
    core["framing"] = FramingConfig(**config["framing"]).label
    core["data"] = flat.get("data.name") if flat.get("data.name") != "file" else \
        flat.get("data.path")
    return {k: _hparam_value(v) for k, v in core.items()}


def hparams_metrics(config: dict) -> list[str]:
    """The metrics of the HParams table: the last value of each of these tags."""
    char = FramingConfig(**config["framing"]).token_level == "char"
    tags = ["val/loss", "val/accuracy", "val/bits_per_char" if char else "val/perplexity",
            "train/loss"]
    return tags if char else tags + ["heldout/word_accuracy", "heldout/word_perplexity"]


def event_files(logdir: Path) -> list[Path]:
    return sorted(Path(logdir).glob(EVENTS_GLOB))


def truncate_events(logdir: Path, keep_step: int) -> int:
    """Cut a TensorBoard run back to the steps ``<= keep_step`` and drop its session end, so a
    resumed run appends without showing a step twice. Each event file is rewritten (same name,
    atomically) only if it held something to drop. Returns the number of events dropped."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboardX.record_writer import RecordWriter

    dropped = 0
    for path in event_files(logdir):
        kept, before = [], dropped
        for raw in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(raw)
            if event.step > keep_step or any(v.tag == _SESSION_END_TAG
                                             for v in event.summary.value):
                dropped += 1
            else:
                kept.append(raw)
        if dropped > before:
            tmp = path.with_name(path.name + ".tmp")
            writer = RecordWriter(str(tmp))
            for raw in kept:
                writer.write(raw)
            writer.close()
            tmp.replace(path)
    return dropped


def _session_end(failed: bool) -> Any:
    """The HParams session end (success or failure), as tensorboardX's ``hparams`` writes it."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    info = SessionEndInfo(status=Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS"),
                          end_time_secs=time.time())
    content = HParamsPluginData(session_end_info=info, version=0).SerializeToString()
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams",
                                                                  content=content))
    return Summary(value=[Summary.Value(tag=_SESSION_END_TAG, metadata=meta)])


class TensorBoardTracker:
    """One TensorBoard run: per-epoch scalars (``train/*``, ``val/*``, ``time/*``), the learning
    rate and tokens/s, the samples as text, held-out scores at the end, and an HParams session
    that starts with the run (so a running job shows in the table) and ends with its status.

    ``resume_from``: the last row a resumed run kept in metrics.jsonl ({} if none); the run dir's
    events past its step are dropped and the new ones appended. ``learning_rate``: the optimizer's
    rate (a number or a schedule of the step); ``tokens_per_epoch`` turns epochs per second into
    tokens per second. tensorboardX writes from a thread and flushes every :data:`FLUSH_SECS`, so
    TensorBoard (which rereads every 5 s) shows a running job's epochs as they come.
    """

    def __init__(self, logdir: Path, name: str, config: dict, *, resume_from: dict | None = None,
                 learning_rate: float | Callable[[int], Any] | None = None,
                 tokens_per_epoch: int | None = None):
        from tensorboardX import SummaryWriter

        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        if resume_from is None:  # a new run never appends to an old one
            for path in event_files(self.logdir):
                path.unlink()
        else:
            truncate_events(self.logdir, int(resume_from.get("step", 0)))
        fresh = not event_files(self.logdir)
        self._lr, self._tokens_per_epoch = learning_rate, tokens_per_epoch
        self._last = dict(resume_from or {})
        self._failed = False  # a summary whose status is not "completed" sets it
        self.writer = SummaryWriter(str(self.logdir), flush_secs=FLUSH_SECS,
                                    filename_suffix=f".{os.getpid()}.{time.time_ns()}")  # unique
        if fresh:
            from tensorboardX.summary import hparams

            exp, start, _ = hparams(hparams_of(name, config),
                                    dict.fromkeys(hparams_metrics(config)))
            self.writer.file_writer.add_summary(exp)
            self.writer.file_writer.add_summary(start)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        scalars = {scalar_tag(k): v for k, v in metrics.items()
                   if isinstance(v, numbers.Real) and not isinstance(v, bool)}
        scalars.pop(None, None)
        if "optim/learning_rate" not in scalars and self._lr is not None:
            scalars["optim/learning_rate"] = self._lr(step) if callable(self._lr) else self._lr
        if "speed/tokens_per_second" not in scalars and self._tokens_per_epoch:
            done = metrics.get("epochs", 0) - self._last.get("epochs", 0)
            seconds = metrics.get("train_seconds", 0) - self._last.get("train_seconds", 0)
            if done > 0 and seconds > 0:
                scalars["speed/tokens_per_second"] = done * self._tokens_per_epoch / seconds
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, float(value), step)
        self._last = dict(metrics)

    def summary(self, summary: dict[str, Any]) -> None:
        step = int(summary.get("steps", self._last.get("step", 0)))
        for key in ("heldout_word_accuracy", "heldout_word_perplexity"):
            if isinstance(summary.get(key), numbers.Real):
                self.writer.add_scalar(scalar_tag(key), float(summary[key]), step)
        samples = summary.get("samples") or []
        if samples:
            self.writer.add_text("samples", "\n".join(f"* `{s}`" for s in samples), step)
        self._failed = summary.get("status", "completed") != "completed"

    def finish(self, exit_code: int = 0) -> None:
        """Ends the HParams session (success or failure; an interrupted run, exit code >= 128,
        leaves it open so its resume continues the same session) and closes the file."""
        if self.writer is None:
            return
        if exit_code < 128:
            self.writer.file_writer.add_summary(_session_end(exit_code != 0 or self._failed))
        self.writer.close()
        self.writer = None


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
                  wandb_id: str | None = None, keep_epochs: int | None = None, *,
                  learning_rate: float | Callable[[int], Any] | None = None,
                  tokens_per_epoch: int | None = None) -> Trackers:
    """metrics.jsonl (+ W&B, + TensorBoard). ``wandb_id`` resumes that W&B run; ``keep_epochs``
    (resume) cuts metrics.jsonl (and the TensorBoard run) back to the epochs 1..keep_epochs
    instead of starting afresh. ``learning_rate`` and ``tokens_per_epoch`` feed TensorBoard's
    learning-rate and tokens/s curves."""
    metrics = Path(run_dir) / "metrics.jsonl"
    trackers = Trackers([JsonlTracker(metrics, keep_epochs)])
    try:
        if cfg.wandb and wandb_mode(cfg) != "disabled":
            trackers.trackers.append(WandbTracker(cfg, run_dir, name, config, wandb_id))
        if cfg.tensorboard:
            trackers.trackers.append(TensorBoardTracker(
                tensorboard_dir(run_dir, name), name, config,
                resume_from=None if keep_epochs is None else last_row(metrics),
                learning_rate=learning_rate, tokens_per_epoch=tokens_per_epoch))
    except BaseException:
        trackers.finish(exit_code=1)
        raise
    return trackers
