"""The job side of a search: one trial's training run.

The search passes each job its trial number and the study's storage URL as Hydra overrides
(``hydra.sweeper.trial``, ``hydra.sweeper.storage``), so the job finds its trial through the
database wherever it runs: in the search's process (Hydra's basic launcher), in a joblib worker
or on a SLURM node. After every epoch the run reports the searched metric to Optuna and asks the
pruner whether to go on; a pruned run ends with summary.json status "pruned" and its last
metrics. The job tells the study how the trial ended (complete with its metric, pruned, failed).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from lmjax.errors import Interrupted, LmjaxError, Pruned
from lmjax.fmt import num
from lmjax.search.study import DIR_ATTR, ERROR_ATTR, SearchSettings, open_storage, tell


def current_settings() -> SearchSettings | None:
    """The running job's search settings, or None when the job is not a trial of a search."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not under Hydra
        return None
    node = hc.get("sweeper")
    if node is None or node.get("trial") is None:
        return None
    return SearchSettings.from_hydra(node)


def run_trial(cfg: Any, run_dir: Path, train: Callable[..., dict] | None = None,
              **kwargs: Any) -> dict:
    """Train ``cfg`` in ``run_dir`` (``lmjax.train.loop.run``, given ``kwargs``); in a search,
    as its trial."""
    if train is None:
        from lmjax.train.loop import run as train
    s = current_settings()
    if s is None:
        return train(cfg, run_dir, **kwargs)
    trial = _Trial(s, run_dir)
    try:
        try:
            summary = train(cfg, run_dir, on_epoch=trial.on_epoch, **kwargs)
        except Pruned as e:
            return trial.pruned(e)
        except BaseException as e:
            trial.failed(e)
            raise
        return trial.finished(summary)
    finally:
        trial.storage.engine.dispose()  # many trials run in one process


class _Trial:
    """One trial of the study, loaded through its storage."""

    def __init__(self, s: SearchSettings, run_dir: Path):
        import optuna

        from lmjax.search.study import make_pruner

        assert s.trial is not None and s.storage
        self.s, self.run_dir, self.number = s, Path(run_dir), s.trial
        self.storage = storage = open_storage(s.storage, s)
        self.study = optuna.load_study(study_name=s.study_name, storage=storage,
                                       pruner=make_pruner(s))
        study_id = storage.get_study_id_from_name(s.study_name)
        self.trial = optuna.trial.Trial(
            self.study, storage.get_trial_id_from_study_id_trial_number(study_id, s.trial))
        self.trial.set_user_attr(DIR_ATTR, str(self.run_dir))
        self.last: dict = {}
        self.reported = False

    def on_epoch(self, record: dict, step: int) -> None:
        """Report the metric after an epoch; raise Pruned when the pruner says so."""
        self.last = record
        v = record.get(self.s.metric)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return  # a metric only the final summary has (held-out words): no pruning
        epoch = int(record.get("epoch", step))
        if epoch % self.s.report_every_epochs:
            return  # every trial reports at the same epochs, so the pruner can compare them
        self.trial.report(float(v), epoch)
        self.reported = True
        if self.s.pruner != "none" and self.trial.should_prune():
            raise Pruned(f"trial {self.number} pruned by the {self.s.pruner} pruner after epoch "
                         f"{epoch}: {self.s.metric} {num(v)}")

    def pruned(self, e: Pruned) -> dict:
        """summary.json: status pruned, with the last epoch's metrics; the study: PRUNED."""
        import optuna

        path = self.run_dir / "summary.json"
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = {"status": "pruned", "error": f"Pruned: {e}"}
        last = {k: v for k, v in self.last.items() if k != "epoch"}
        summary = {**last, **info, "pruned_after_epoch": self.last.get("epoch")}
        path.write_text(json.dumps(summary, indent=2) + "\n")
        tell(self.study, self.number, state=optuna.trial.TrialState.PRUNED)
        print(f"lmjax: {e}", flush=True)
        return {**summary, "_printed": True}  # experiments.run prints nothing more for it

    def finished(self, summary: dict) -> dict:
        import optuna

        v = summary.get(self.s.metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            tell(self.study, self.number, float(v))
            return summary
        keys = sorted(k for k, x in summary.items()
                      if isinstance(x, (int, float)) and not isinstance(x, bool))
        why = (f"summary.json has {self.s.metric} = {v}" if self.s.metric in summary else
               f"summary.json has no {self.s.metric!r}; hydra.sweeper.metric can be any of "
               f"{', '.join(keys)}")
        self.trial.set_user_attr(ERROR_ATTR, why)
        tell(self.study, self.number, state=optuna.trial.TrialState.FAIL)
        print(f"lmjax: error: trial {self.number}: {why}", file=sys.stderr, flush=True)
        return summary

    def failed(self, e: BaseException) -> None:
        """A failed run is a FAIL (with its error); an interrupted one is a FAIL retried on the
        next run of the search."""
        import optuna

        interrupted = isinstance(e, (Interrupted, KeyboardInterrupt))
        try:
            if not interrupted:
                line = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
                self.trial.set_user_attr(ERROR_ATTR, line if isinstance(e, LmjaxError) else
                                         f"{line} (see {self.run_dir / 'error.txt'})")
            tell(self.study, self.number, state=optuna.trial.TrialState.FAIL)
            if interrupted:
                from lmjax.search.study import retry

                retry(self.study, self.s, self.number)
                print(f"lmjax: trial {self.number} interrupted; it is queued again: run the same "
                      f"search command to continue the study", file=sys.stderr, flush=True)
        except Exception as err:  # noqa: BLE001 - the run's own error matters more
            print(f"lmjax: trial {self.number}: could not record the failure in the study: "
                  f"{err}", file=sys.stderr, flush=True)
