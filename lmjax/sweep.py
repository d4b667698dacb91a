"""Hydra multirun support: each job's W&B group and name, and failure isolation.

A sweep (``python -m experiments.run -m ...``) runs every job in its own run dir under one sweep
dir. Here, for each job:

* :func:`job_info` reads what Hydra knows about the job (multirun or not, sweep dir, job number,
  its overrides) into a plain :class:`JobInfo`, so the rest needs no Hydra.
* :func:`name_job` sets the W&B ``group`` (the sweep dir's name, unless ``logger.group`` is set)
  and the run ``name`` (the job's swept overrides, e.g. ``framing=two_word,seed=1``).
* :func:`run_job` runs the job; in a multirun a job that raises is *recorded* (``error.txt`` and a
  failed ``summary.json`` in its run dir, a line in ``<sweep_dir>/sweep_summary.jsonl``) and the
  sweep carries on. Every job, failed or not, appends one line to ``sweep_summary.jsonl``. A
  single run still raises, so it exits non-zero with the one-line error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lmjax.errors import Interrupted, LmjaxError

SWEEP_SUMMARY = "sweep_summary.jsonl"
# summary.json keys copied into sweep_summary.jsonl for a completed job
_SUMMARY_KEYS = ("framing", "hidden_size", "seed", "params", "val_loss", "val_accuracy",
                 "oracle_val_accuracy", "val_perplexity", "val_bits_per_char",
                 "heldout_word_perplexity", "heldout_word_accuracy", "wall_seconds")


@dataclass(frozen=True)
class JobInfo:
    multirun: bool
    run_dir: Path
    sweep_dir: Path | None = None
    job_num: int | None = None
    overrides: tuple[str, ...] = ()  # this job's task overrides, e.g. ("framing=two_word", ...)
    swept_keys: frozenset[str] = field(default_factory=frozenset)  # keys with several values

    @property
    def group(self) -> str | None:
        return self.sweep_dir.name if self.sweep_dir is not None else None

    @property
    def name(self) -> str:
        """The job's swept overrides (all its overrides when those are unknown), in order."""
        keys = self.swept_keys
        picked = [o for o in self.overrides if _key(o) in keys] if keys else list(self.overrides)
        return ",".join(picked or self.overrides)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_info() -> JobInfo:
    """What Hydra knows about the running job (call inside the ``@hydra.main`` function)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.mode != RunMode.MULTIRUN:
        return JobInfo(False, run_dir)
    sweep_dir = Path(hc.sweep.dir)
    overrides = tuple(str(o) for o in hc.overrides.task)
    params = dict(hc.sweeper.get("params") or {}) if "sweeper" in hc else {}
    return JobInfo(True, run_dir, sweep_dir, int(hc.job.num), overrides,
                   swept_keys(sweep_dir, params))


def swept_keys(sweep_dir: Path, params: dict[str, Any]) -> frozenset[str]:
    """Keys that take several values in this sweep: those of ``hydra.sweeper.params`` and the
    sweep overrides of the command line (read back from ``<sweep_dir>/multirun.yaml``)."""
    keys = {_key(str(k)) for k in params}
    try:
        import yaml
        from hydra.core.override_parser.overrides_parser import OverridesParser

        saved = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())
        args = [str(a) for a in saved["hydra"]["overrides"]["task"]]
        for o in OverridesParser.create().parse_overrides(args):
            if o.is_sweep_override():
                keys.add(o.get_key_element().lstrip("+~"))
    except Exception:  # noqa: BLE001 - a name is a convenience; fall back to all overrides
        if not keys:
            return frozenset()
    return frozenset(keys)


def name_job(cfg: Any, info: JobInfo) -> Any:
    """The typed config with the W&B group (the sweep) and a readable run name (a multirun)."""
    if not info.multirun:
        return cfg
    logger = cfg.logger
    if logger.group is None and info.group:
        logger = dataclasses.replace(logger, group=info.group)
    return dataclasses.replace(cfg, logger=logger, name=info.name or cfg.name)


def _append_line(path: Path, row: dict) -> None:
    """One JSON line, appended with a single write (jobs running in parallel do not mix)."""
    data = (json.dumps(row, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _record(info: JobInfo, status: str, summary: dict | None = None,
            error: str | None = None) -> None:
    assert info.sweep_dir is not None
    try:
        rel = str(info.run_dir.resolve().relative_to(info.sweep_dir.resolve()))
    except ValueError:
        rel = str(info.run_dir)
    row: dict[str, Any] = {"job": info.job_num, "run_dir": rel, "name": info.name,
                           "overrides": list(info.overrides), "status": status}
    if error is not None:
        row["error"] = error
    for k in _SUMMARY_KEYS:
        if summary and k in summary:
            row[k] = summary[k]
    info.sweep_dir.mkdir(parents=True, exist_ok=True)
    _append_line(info.sweep_dir / SWEEP_SUMMARY, row)


def record_failure(info: JobInfo, e: BaseException) -> str:
    """error.txt and a failed summary.json in the job's dir (the loop's own failed summary is
    kept and completed), plus the sweep's line. Returns the one-line error."""
    line = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
    d = info.run_dir
    d.mkdir(parents=True, exist_ok=True)
    detail = "" if isinstance(e, LmjaxError) else "\n" + "".join(
        traceback.format_exception(type(e), e, e.__traceback__))
    (d / "error.txt").write_text(line + "\n" + detail)
    summary: dict[str, Any] = {}
    try:
        summary = json.loads((d / "summary.json").read_text())
    except (OSError, ValueError):
        pass
    if not isinstance(summary, dict) or summary.get("status") == "completed":
        summary = {}
    summary.setdefault("status", "interrupted" if isinstance(e, Interrupted) else "failed")
    summary.setdefault("error", line)
    summary.update(name=summary.get("name", info.name), job=info.job_num,
                   overrides=list(info.overrides))
    (d / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _record(info, summary["status"], error=line)
    return line


def run_job(fn: Callable[[], dict], info: JobInfo) -> dict | None:
    """Run one job. A single run: exceptions propagate. A multirun job: the summary (or the
    failure) is recorded in the sweep; an error returns None so the next job starts. Ctrl-C and
    SIGTERM (Interrupted) are recorded and still stop the sweep."""
    if not info.multirun:
        return fn()
    try:
        summary = fn()
    except Exception as e:  # noqa: BLE001 - isolate the job, record why it failed
        line = record_failure(info, e)
        if isinstance(e, Interrupted):
            raise
        print(f"lmjax: job {info.job_num} ({info.name}) failed: {line}; see "
              f"{info.run_dir / 'error.txt'}", file=sys.stderr, flush=True)
        return None
    _record(info, str(summary.get("status", "completed")), summary)
    return summary
