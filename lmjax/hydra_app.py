"""Hydra-side plumbing of ``python -m experiments.run``: one-line errors, and run dirs that a
refused command leaves as they were.

Hydra composes the config, makes the run dir (``results/runs/<date>/<time>_<name>/`` or
``hydra.run.dir``) and opens ``run.log`` there before the task function sees anything. So:

* :func:`run_main` runs the ``@hydra.main`` function with ``HYDRA_FULL_ERROR=1``, so that
  composition errors (a misspelled key, a wrong type, a bad override) reach lmjax as exceptions,
  and prints them as one ``lmjax: error:`` line with exit status 2
  (:func:`lmjax.config_errors.hydra_error_line`). ``LMJAX_TRACEBACK=1`` shows them in full.
* :class:`Guard`, a Hydra callback (``hydra.callbacks.lmjax`` in conf/config.yaml), checks the
  composed config against the schema *before* Hydra makes any folder (the whole typed config
  for a single run; the keys for a sweep, whose jobs each get their values), remembers which
  folders this command creates, and prints the sweep dir when a sweep ends.
* :func:`run_dir_guard` wraps the task: Hydra's own ``.hydra/`` files are written only once the
  run is accepted (conf/config.yaml sets ``hydra.output_subdir: null``; :func:`save_hydra_files`
  writes the same three files), so a refused run never overwrites an existing run's ``.hydra/``;
  and a refused command removes the folders and log file it created, so no empty dated run dir
  is left behind.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hydra.experimental.callback import Callback

from lmjax.errors import LmjaxError

HYDRA_FILES = ".hydra"


def shown(path: str | Path) -> str:
    """A path as the user would type it: relative to the working dir when inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` (itself included) that does not exist yet, or None."""
    path = path.resolve()
    top = None
    for p in (path, *path.parents):
        if p.exists():
            break
        top = p
    return top


# folder Hydra is about to make -> the topmost folder of it that this command creates
_CREATED: dict[Path, Path] = {}
_SWEEP_DIRS: list[Path] = []
# an existing run dir -> the log files it held before Hydra opened its own
_LOGS_BEFORE: dict[Path, set[str]] = {}


class Guard(Callback):
    """Hydra callback: validate before any folder exists; note which folders are new.

    Hydra turns an exception raised in a callback into a warning, so a refusal here prints its
    line and exits (status 2) itself."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        from lmjax.config import from_dictconfig

        HydraConfig.instance().set_config(config)  # for ${hydra:...} in the config (as run_job)
        _refuse_on_error(lambda: from_dictconfig(_without_hydra(config)))  # a bad value
        self._note(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        # keys only: each job checks its own values (a bad one is recorded as a failed job)
        _refuse_on_error(lambda: check_keys(_without_hydra(config)))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self._note(sweep_dir)
        _SWEEP_DIRS.append(sweep_dir.resolve())

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        print(f"sweep dir: {shown(sweep_dir)}{_failed_jobs(sweep_dir)}", flush=True)

    @staticmethod
    def _note(path: Path) -> None:
        top = _first_missing(path)
        if top is not None:
            _CREATED[path.resolve()] = top
        else:
            _LOGS_BEFORE[path.resolve()] = {p.name for p in path.glob("*.log")}


def _refuse_on_error(check: Callable[[], Any]) -> None:
    """Run ``check``; an LmjaxError is printed as one line (in full with LMJAX_TRACEBACK=1) and
    the process exits with status 2."""
    from lmjax.cli import error_exit

    try:
        check()
    except LmjaxError as e:
        if os.environ.get("LMJAX_TRACEBACK") == "1":
            import traceback

            traceback.print_exc()
        error_exit(str(e), getattr(e, "exit_code", 2))


def _without_hydra(config: Any) -> Any:
    from omegaconf import open_dict, read_write

    cfg = copy.deepcopy(config)
    with read_write(cfg), open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def check_keys(dcfg: Any) -> None:
    """Refuse keys the schema does not know (``+new.key=1``), naming the closest one."""
    from omegaconf import OmegaConf

    from lmjax.config import flat_dict
    from lmjax.config_errors import schema_keys, unknown_key_message
    from lmjax.errors import ConfigError

    keys = schema_keys()
    plain = OmegaConf.to_container(dcfg, resolve=False)
    for key in flat_dict(plain):
        if key not in keys:
            raise ConfigError(unknown_key_message(key))


def _failed_jobs(sweep_dir: Path) -> str:
    import json

    from lmjax.sweep import SWEEP_SUMMARY

    try:
        rows = [json.loads(x) for x in (sweep_dir / SWEEP_SUMMARY).read_text().splitlines() if x]
    except (OSError, ValueError):
        return ""
    bad = sum(r.get("status") not in ("completed", "pruned") for r in rows)
    return f" ({bad} of {len(rows)} jobs failed; see {SWEEP_SUMMARY})" if bad else ""


def save_hydra_files(run_dir: Path, dcfg: Any) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``, as Hydra writes them."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.instance().cfg
    out = run_dir / HYDRA_FILES
    out.mkdir(parents=True, exist_ok=True)
    for name, node in (("config.yaml", dcfg), ("hydra.yaml", hydra_cfg),
                       ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        (out / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")


def _log_files_in(run_dir: Path) -> list[Path]:
    """Detach and close the logging handlers writing into ``run_dir``; their files."""
    out = []
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for h in list(getattr(logger, "handlers", [])):
            f = Path(getattr(h, "baseFilename", "") or "/")
            if f.parent == run_dir:
                logger.removeHandler(h)
                h.close()
                out.append(f)
    return out


def _remove(path: Path, top: Path) -> None:
    """Remove ``path`` and then its parents up to ``top`` while they are empty."""
    shutil.rmtree(path)
    for p in path.parents:
        if not p.is_relative_to(top) or not p.is_dir() or any(p.iterdir()):
            break
        p.rmdir()


def _undo(run_dir: Path) -> None:
    """A refused command: remove the folders and log files it created (nothing else)."""
    logs = _log_files_in(run_dir)
    top = _CREATED.get(run_dir)
    if top is not None:
        if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {f.name for f in logs}:
            _remove(run_dir, top)
        return
    before = _LOGS_BEFORE.get(run_dir)
    for f in logs:
        if before is not None and f.name not in before:
            f.unlink(missing_ok=True)


@contextmanager
def run_dir_guard(run_dir: str | Path, dcfg: Any) -> Iterator[Callable[[], None]]:
    """Yields ``accept()``: call it once the run is accepted (``loop.run``'s ``on_start``);
    it writes ``.hydra/``. A normal exit accepts too. An exception before ``accept()`` is a
    refusal: the folders and log files this command made are removed, ``.hydra/`` untouched."""
    run_dir = Path(run_dir).resolve()
    accepted = False

    def accept() -> None:
        nonlocal accepted
        if not accepted:
            accepted = True
            save_hydra_files(run_dir, dcfg)

    try:
        yield accept
    except BaseException:
        if not accepted:
            _undo(run_dir)
            if _CREATED.get(run_dir) is not None and run_dir.is_dir():
                accept()  # a new dir that holds the failed run's files: say how it was made
        raise
    accept()


def run_main(main: Callable[[], Any], conf_dir: Path, argv: list[str]) -> None:
    """Run a ``@hydra.main`` function; a composition error is one line and exit status 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from lmjax.cli import check_group_choices, closed_pipe_exit, error_exit
    from lmjax.config_errors import hydra_error_line

    check_group_choices(conf_dir, argv)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them
    try:
        main()
    except (HydraException, OmegaConfBaseException, LmjaxError) as e:
        _undo_sweep_dir()
        if os.environ.get("LMJAX_TRACEBACK") == "1":
            raise
        if isinstance(e, LmjaxError):
            error_exit(str(e), getattr(e, "exit_code", 2))
        error_exit(hydra_error_line(e))
    except KeyboardInterrupt:
        error_exit("interrupted", 130)
    except BrokenPipeError:  # --help | head
        closed_pipe_exit()


def _undo_sweep_dir() -> None:
    """A sweep refused before its first job: remove the sweep dir it made (multirun.yaml)."""
    for path in _SWEEP_DIRS:
        top = _CREATED.get(path)
        if top and path.is_dir() and {p.name for p in path.iterdir()} <= {"multirun.yaml"}:
            _remove(path, top)
