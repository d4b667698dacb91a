"""The search's settings, Optuna's samplers and pruners, and the study in its database.

The study lives in a database so that a search survives its process: SQLite in the sweep dir by
default (``<sweep dir>/optuna.db``), any SQLAlchemy URL through ``hydra.sweeper.storage``
(PostgreSQL for several machines). The parent process records a heartbeat for each trial it
runs; a trial left RUNNING by a killed search stops beating, and the next process to look at
the study (a rerun, or another worker) marks it FAIL and queues a retry with the same values
(Optuna's ``fail_stale_trials`` and ``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lmjax.errors import ConfigError
from lmjax.search.space import SearchSpace

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
DIRECTIONS = ("minimize", "maximize")
DB_NAME = "optuna.db"
# user attrs lmjax keeps in the study and its trials
SPACE_ATTR, METRIC_ATTR, ERROR_ATTR, DIR_ATTR = "search_space", "metric", "error", "run_dir"


@dataclass(frozen=True)
class SearchSettings:
    """``hydra.sweeper.*`` (conf/hydra/sweeper/optuna.yaml documents each key)."""

    n_trials: int = 20
    n_jobs: int = 1
    metric: str = "val_loss"
    direction: str = "minimize"
    sampler: str = "tpe"
    seed: int | None = None
    pruner: str = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 1
    report_every_epochs: int = 1
    storage: str | None = None
    study_name: str = "search"
    heartbeat_s: int = 10
    grace_s: int = 30
    max_retry: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    trial: int | None = None  # set by the search for each job: which trial it runs

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"hydra.sweeper.{msg}")

        need(self.n_trials > 0, f"n_trials must be > 0, got {self.n_trials}")
        need(self.n_jobs > 0, f"n_jobs must be > 0, got {self.n_jobs}")
        need(self.direction in DIRECTIONS, f"direction must be minimize or maximize, "
                                           f"got {self.direction!r}")
        need(self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, "
                                       f"got {self.sampler!r}")
        need(self.pruner in PRUNERS, f"pruner must be one of {', '.join(PRUNERS)}, "
                                     f"got {self.pruner!r}")
        need(bool(self.metric), "metric must name a summary.json key, e.g. val_loss")
        need(0 < self.heartbeat_s < self.grace_s,
             f"heartbeat_s must be > 0 and < grace_s (got {self.heartbeat_s}, {self.grace_s})")
        need(self.report_every_epochs > 0,
             f"report_every_epochs must be > 0, got {self.report_every_epochs}")
        need(self.max_retry >= 0, f"max_retry must be >= 0, got {self.max_retry}")

    @classmethod
    def from_hydra(cls, node: Any) -> "SearchSettings":
        """From the ``hydra.sweeper`` node (a DictConfig or a dict); unknown keys are ignored
        (``_target_``)."""
        from omegaconf import OmegaConf

        d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def storage_url(self, sweep_dir: str | Path) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(Path(sweep_dir) / DB_NAME).resolve()}"


def make_sampler(s: SearchSettings, space: SearchSpace, n_before: int = 0) -> Any:
    """Optuna's sampler. With a seed, a study continued after ``n_before`` trials draws with
    seed + n_before: a rerun does not replay the values its first run already tried."""
    import optuna

    seed = None if s.seed is None else s.seed + n_before
    if s.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(s: SearchSettings) -> Any:
    import optuna

    if s.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s.pruner_startup_trials,
                                           n_warmup_steps=s.pruner_warmup_epochs)
    if s.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, s.pruner_warmup_epochs))
    return optuna.pruners.NopPruner()


def open_storage(url: str, s: SearchSettings) -> Any:
    """Optuna's RDBStorage with heartbeats: stale RUNNING trials are failed and retried."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):  # several processes: wait for the lock instead of failing
        kwargs = {"connect_args": {"timeout": 60}}
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=s.max_retry)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=s.heartbeat_s,
                grace_period=s.grace_s, heartbeat_stale_trial_callback=retry)
    except Exception as e:  # noqa: BLE001 - a bad URL or an unreachable database
        raise ConfigError(f"cannot open the study's database {url!r} (hydra.sweeper.storage): "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if url.startswith("sqlite:"):
        _sqlite_wal(storage.engine)
    return storage


def _sqlite_wal(engine: Any) -> None:
    """SQLite in write-ahead-log mode, synced at checkpoints: a trial reports its metric after
    every epoch, and a commit that waits for the disk each time costs ~10-30 ms (WAL: ~2 ms).
    Safe for several processes on one machine (not for a database on a network drive)."""
    from sqlalchemy import event

    def pragmas(dbapi_con: Any, _record: Any) -> None:
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened while the tables were made get the pragmas too


def open_study(s: SearchSettings, storage: Any, space: SearchSpace | None = None) -> Any:
    """Create the study or continue it. A study started with another direction, metric or
    search space is refused (a new ``hydra.sweep.dir`` or ``hydra.sweeper.study_name`` starts
    a new one)."""
    import optuna

    try:
        study = optuna.create_study(storage=storage, study_name=s.study_name,
                                    direction=s.direction, pruner=make_pruner(s),
                                    load_if_exists=True)
    except ValueError as e:  # a different direction
        raise ConfigError(f"study {s.study_name!r}: {str(e).splitlines()[0]}; start a new study "
                          f"with another hydra.sweep.dir or hydra.sweeper.study_name") from None
    if space is None:
        return study
    study.sampler = make_sampler(s, space, len(study.get_trials(deepcopy=False)))
    want = {SPACE_ATTR: space.describe(), METRIC_ATTR: s.metric}
    have = study.user_attrs
    for key, value in want.items():
        if key not in have:
            study.set_user_attr(key, value)
        elif have[key] != value:
            what = key.replace("_", " ")
            raise ConfigError(
                f"study {s.study_name!r} in {_where(storage)} was started with {what} "
                f"{have[key]}, not {value}; rerun with the same search, or start a new study "
                f"with another hydra.sweep.dir or hydra.sweeper.study_name")
    return study


def _where(storage: Any) -> str:
    return getattr(storage, "url", "its storage")


@dataclass(frozen=True)
class Progress:
    ended: int  # complete, pruned, or failed by the job itself
    running: int  # running now (here or in another process)
    queued: int  # waiting to be run (a retry of a trial whose process died)
    complete: int
    pruned: int
    failed: int

    def todo(self, n_trials: int) -> int:
        """Trials still to start (a queued retry is started first)."""
        return max(0, n_trials - self.ended - self.running)


def progress(study: Any) -> Progress:
    """Where the study stands. A trial failed by its job (a bad config, a diverged loss) counts
    as ended; one failed because its process died is retried and does not."""
    from optuna.trial import TrialState as S

    trials = study.get_trials(deepcopy=False)
    n = {st: 0 for st in S}
    job_failed = 0
    for t in trials:
        n[t.state] += 1
        if t.state == S.FAIL and ERROR_ATTR in t.user_attrs:
            job_failed += 1
    return Progress(ended=n[S.COMPLETE] + n[S.PRUNED] + job_failed,
                    running=n[S.RUNNING], queued=n[S.WAITING], complete=n[S.COMPLETE],
                    pruned=n[S.PRUNED], failed=n[S.FAIL])


def fail_stale(study: Any) -> None:
    """Mark trials whose process died (no heartbeat for ``grace_s``) FAIL; queue their retry."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class Heartbeat:
    """Record a heartbeat for the given trials every ``interval`` seconds while in the block
    (the parent process does it for the trials its launcher runs, here or elsewhere)."""

    def __init__(self, storage: Any, trial_ids: Iterable[int], interval: float):
        self.storage, self.ids, self.interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            for i in self.ids:
                try:
                    self.storage.record_heartbeat(i)
                except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                    pass
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        for i in self.ids:  # a first beat now: a trial without any is never seen as stale
            self.storage.record_heartbeat(i)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def retry(study: Any, s: SearchSettings, number: int) -> None:
    """Queue a trial again with the same values (an interrupted trial), up to ``max_retry``
    times, as Optuna does for a trial whose heartbeat stopped."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        cb = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=s.max_retry)
        cb(study, study.get_trials(deepcopy=False)[number])


def tell(study: Any, number: int, *args: Any, **kwargs: Any) -> None:
    """``study.tell``; the grid sampler's "grid done" (it calls ``study.stop()``, which only
    works inside ``Study.optimize``) is ignored: the trial is stored before it."""
    try:
        study.tell(number, *args, **kwargs)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise
