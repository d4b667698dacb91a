"""The search loop behind ``python -m experiments.run -m hydra/sweeper=optuna ...``.

Optuna's ask/tell API: ask the study for ``n_jobs`` trials, launch them as Hydra jobs (one run
dir per trial: ``<sweep dir>/<trial number>/``), let each job tell the study how it ended, and
repeat until the study holds ``n_trials`` ended trials. Everything lives in the study's database,
so the same command run again continues the study, and several processes can work on one study
at once (each asks for its own trials; Optuna numbers them).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lmjax.errors import Interrupted
from lmjax.fmt import num
from lmjax.search.space import SearchSpace, parse_space
from lmjax.search.study import (ERROR_ATTR, SearchSettings, Heartbeat, fail_stale, open_storage,
                                open_study, progress, retry, tell)

# launch(overrides of each job, number of the first job) -> one result per job: (ok, error)
Launch = Callable[[list[list[str]], int], Sequence[Any]]


@dataclass
class Search:
    settings: SearchSettings
    sweep_dir: Path
    launch: Launch
    validate: Callable[[list[list[str]]], None]  # compose each job's config, or raise
    echo: Callable[[str], None] = print

    def run(self, arguments: list[str]) -> Any:
        s = self.settings
        space = parse_space(arguments, s.params)
        self.validate(_probes(space))  # an unknown key or group value fails before any trial
        url = s.storage_url(self.sweep_dir)
        storage = open_storage(url, s)
        study = open_study(s, storage, space)
        study_id = storage.get_study_id_from_name(s.study_name)
        p = progress(study)
        self.echo(f"search: study {s.study_name!r} in {url}: {s.metric} ({s.direction}), "
                  f"sampler {s.sampler}, pruner {s.pruner}; {p.ended} of {s.n_trials} trials "
                  f"done" + (f" ({p.complete} complete, {p.pruned} pruned)" if p.ended else ""))
        for k, d in space.describe().items():
            self.echo(f"  {k}: {d}")
        n_trials = s.n_trials
        if s.sampler == "grid":  # Optuna's grid sampler repeats points once all are done
            n_trials = min(n_trials, math.prod(len(v) for v in space.grid().values()))
        waiting = False
        while True:
            fail_stale(study)  # trials of a killed process: FAIL, and queued again
            p = progress(study)
            k = min(s.n_jobs, p.todo(n_trials))
            if k == 0:
                if p.running == 0:
                    break
                if not waiting:  # another process's trials (or a dead one's, until it is stale)
                    waiting = True
                    self.echo(f"search: waiting for {p.running} trial(s) running elsewhere")
                time.sleep(min(s.heartbeat_s, 5))
                continue
            waiting = False
            self._batch(study, storage, study_id, space, url, k)
        self._summary(study)
        return study

    def _batch(self, study: Any, storage: Any, study_id: int, space: SearchSpace, url: str,
               k: int) -> None:
        trials, ids = [], []
        for _ in range(k):
            with warnings.catch_warnings():  # heartbeats are kept here, not by Study.optimize
                warnings.filterwarnings("ignore", "Heartbeat of storage")
                t = study.ask(space.distributions)
            ids.append(storage.get_trial_id_from_study_id_trial_number(study_id, t.number))
            storage.record_heartbeat(ids[-1])  # at once: a trial without one is never stale
            trials.append(t)
        jobs = [space.overrides(t.params) + [
            f"hydra.sweep.subdir={t.number}", f"hydra.sweeper.trial={t.number}",
            f"hydra.sweeper.storage={_quote(url)}"] for t in trials]
        with Heartbeat(storage, ids, self.settings.heartbeat_s):
            results = self.launch(jobs, trials[0].number)
        stop = None
        for t, tid, r in zip(trials, ids, results):
            err = _job_error(r)
            if isinstance(err, (Interrupted, KeyboardInterrupt)):
                stop = err
            if storage.get_trial(tid).state.is_finished():
                self._echo_trial(storage.get_trial(tid), study)
                continue
            # the job ended without telling the study (it failed before training started)
            import optuna

            where = self.sweep_dir / str(t.number) / "error.txt"
            why = (_first_line(where) if where.exists() else
                   f"{type(err).__name__}: {err}" if err else "the job reported no result")
            if stop is None:  # an interrupted trial is not counted as ended: it is rerun
                storage.set_trial_user_attr(tid, ERROR_ATTR, why)
            tell(study, t.number, state=optuna.trial.TrialState.FAIL)
            if stop is not None:
                retry(study, self.settings, t.number)
            self.echo(f"trial {t.number}: failed: {why}")
        if stop is not None:
            raise Interrupted("search interrupted; run the same command again to continue "
                              "the study", getattr(stop, "exit_code", 130))

    def _echo_trial(self, t: Any, study: Any) -> None:
        state = t.state.name.lower()
        value = f"{self.settings.metric} {num(t.value)}" if t.value is not None else \
            t.user_attrs.get(ERROR_ATTR, "")
        best = _best(study)
        tail = f"; best {num(best.value)} (trial {best.number})" if best is not None else ""
        self.echo(f"trial {t.number}: {state}, {value}{tail}")

    def _summary(self, study: Any) -> None:
        p = progress(study)
        best = _best(study)
        self.echo(f"search: {p.complete} complete, {p.pruned} pruned, {p.failed} failed")
        if best is not None:
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in best.params.items())
            self.echo(f"best: trial {best.number}, {self.settings.metric} {num(best.value)}: "
                      f"{params} ({self.sweep_dir / str(best.number)})")


def _best(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _probes(space: SearchSpace) -> list[list[str]]:
    """A few configs that between them use every categorical value and each range's ends."""
    import optuna.distributions as od

    n = max([len(d.choices) for d in space.distributions.values()
             if isinstance(d, od.CategoricalDistribution)] + [2])
    out = []
    for i in range(n):
        params = {}
        for k, d in space.distributions.items():
            if isinstance(d, od.CategoricalDistribution):
                params[k] = d.choices[i % len(d.choices)]
            else:
                params[k] = d.low if i % 2 == 0 else d.high
        out.append(space.overrides(params))
    return out


def _job_error(r: Any) -> BaseException | None:
    from hydra.core.utils import JobStatus

    if getattr(r, "status", None) == JobStatus.FAILED:
        return r._return_value  # noqa: SLF001 - JobReturn keeps the exception there
    return None


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _first_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[0] if lines else "failed"
