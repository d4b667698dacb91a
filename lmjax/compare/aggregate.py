"""Read run dirs, group them by everything but the seed, and aggregate mean ± std over seeds.

A *run* is a directory holding ``summary.json`` (and ``config.yaml`` unless it failed before
writing one). A *group* is the set of completed runs whose configs agree on every key that shapes
training except ``seed`` (see :data:`IGNORED_KEYS`); its metrics are the mean, the sample
standard deviation (ddof = 1; NaN with one run) and the count n of the runs that report them.
Runs whose status is not ``completed`` (failed, diverged, pruned, interrupted) are in no group:
no mean, no best group and no plot counts them.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import yaml

from lmjax.compare.timing import number, timing_split
from lmjax.config import flat_dict
from lmjax.errors import LmjaxError


@dataclass(frozen=True)
class Metric:
    key: str  # summary key (or a derived one, see Run.derived)
    title: str  # column title
    digits: int = 4  # decimals for lmjax.fmt.num
    lower_is_better: bool | None = None  # None: neither (sizes, times)
    integer: bool = False  # counts (params): a whole mean prints without decimals


# table order; columns no run reports are left out
METRICS: tuple[Metric, ...] = (
    Metric("val_accuracy", "val acc", 4, False),
    Metric("oracle_val_accuracy", "oracle acc", 4),
    Metric("val_loss", "val loss", 4, True),
    Metric("val_perplexity", "val ppl", 2, True),
    Metric("val_bits_per_char", "val bpc", 4, True),
    Metric("val_top5_accuracy", "top-5 acc", 4, False),
    Metric("heldout_word_accuracy", "held-out word acc", 4, False),
    Metric("heldout_word_perplexity", "held-out word ppl", 2, True),
    # the end-of-run test score (best-validation checkpoint, one stream; docs/metrics.md)
    Metric("test_perplexity", "test ppl", 2, True),
    Metric("test_bits_per_char", "test bpc", 4, True),
    Metric("test_cache_perplexity", "test ppl (cache)", 2, True),
    Metric("params", "params", 0, integer=True),
    Metric("wall_seconds", "wall s", 3),
    Metric("startup_seconds", "start-up s", 3),
    Metric("train_steady_seconds", "train s", 3),
    Metric("tokens_per_second", "tokens/s", 0),
)
METRIC = {m.key: m for m in METRICS}
# config keys that do not define a group: the seed, names, logging, bookkeeping
IGNORED_KEYS = frozenset({
    "seed", "name", "resume", "overwrite", "train.progress", "train.checkpoint_every",
    "train.checkpoint_every_steps", "train.checkpoint_every_s", "train.keep_checkpoints",
    "train.devices", "train.parallel_seeds", "data.data_dir",
})
IGNORED_PREFIXES = ("logger.", "sample.", "hydra.")
# config keys that the "framing" label stands for
FRAMING_NAME_KEYS = ("framing.name", "framing.n_words")


class CompareError(LmjaxError):
    """Nothing to compare, or a path that holds no runs."""


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]  # flattened ("model.hidden_size": 16, ...); {} if none was written
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "completed"))

    @property
    def reason(self) -> str:
        """Why it did not complete: the summary's ``reason`` (diverged) or ``error``."""
        return str(self.summary.get("reason") or self.summary.get("error") or "")

    @property
    def framing(self) -> str:
        if "framing" in self.summary:
            return str(self.summary["framing"])
        name, n = self.config.get("framing.name"), self.config.get("framing.n_words", 1)
        if name == "n_words":
            return {1: "one_word", 2: "two_word", 3: "three_word"}.get(n, f"{n}_words")
        return str(name or "?")

    @property
    def seed(self) -> Any:
        return self.config.get("seed", self.summary.get("seed"))

    @cached_property
    def rows(self) -> list[dict]:
        """metrics.jsonl, one dict per logged epoch ([] when there is none)."""
        try:
            lines = (self.path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                out.append(row)
        return out

    @cached_property
    def derived(self) -> dict[str, float]:
        """Metrics computed from the summary and metrics.jsonl (see :func:`timing_split`)."""
        return timing_split(self.summary, self.rows)

    def metric(self, key: str) -> float | None:
        """A finite number for ``key`` from :attr:`derived` or else the summary, else None."""
        v = number(self.derived.get(key, self.summary.get(key)))
        return v if v is not None and math.isfinite(v) else None

    def params(self) -> dict[str, Any]:
        """Every config key that shapes training, plus the "framing" label."""
        items = {k: v for k, v in self.config.items()
                 if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)}
        items["framing"] = self.framing
        return items

    def key(self) -> tuple:
        """Everything but the seed (and bookkeeping) that shapes training."""
        return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in self.params().items()))


@dataclass
class Stat:
    mean: float
    std: float  # sample std (ddof = 1); NaN for n = 1
    n: int


@dataclass
class Group:
    params: dict[str, Any]  # the group's config values (flattened), plus "framing"
    runs: list[Run]
    stats: dict[str, Stat] = field(default_factory=dict)
    status: str = "completed"  # "diverged": one diverged run, shown but in no mean or best

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, key: str) -> list[float]:
        return [v for v in (r.metric(key) for r in self.runs) if v is not None]

    def label(self, keys: Iterable[str]) -> str:
        return ", ".join(f"{short(k)}={show(self.params.get(k))}" for k in keys)


def short(key: str) -> str:
    """A column title for a config key: ``model.hidden_size`` -> ``hidden_size``."""
    return key.rsplit(".", 1)[-1] if key.count(".") == 1 else key


def titles(keys: list[str]) -> dict[str, str]:
    """Column titles for config keys: the short name unless two keys share it
    (``data.name`` and ``optim.name`` stay whole)."""
    tails = [short(k) for k in keys]
    return {k: t if tails.count(t) == 1 else k for k, t in zip(keys, tails)}


def show(v: Any) -> str:
    """A config value as the user would type it (``0.001``, ``1e+06``, ``16``, ``adam``)."""
    if isinstance(v, float):
        return f"{v:g}"
    return "null" if v is None else str(v)


def mean_std(values: list[float]) -> Stat:
    """Mean and sample standard deviation (ddof = 1, NaN for a single value). Exact for huge
    values too (a diverged perplexity of 1e304 does not overflow)."""
    n = len(values)
    if n == 0:
        return Stat(math.nan, math.nan, 0)
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else math.nan
    return Stat(m, sd, n)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _overrides(path: Path, listed: dict[Path, list[str]]) -> list[str]:
    """Hydra's ``.hydra/overrides.yaml`` of the job (or of the run a ``seed_<s>/`` dir is in),
    else the job's line in the sweep's ``sweep_summary.jsonl``."""
    for d in (path, path.parent):
        f = d / ".hydra" / "overrides.yaml"
        if f.is_file():
            try:
                got = yaml.safe_load(f.read_text(encoding="utf-8"))
            except yaml.YAMLError:
                continue
            if isinstance(got, list):
                return [str(x) for x in got]
    return listed.get(path.resolve(), [])


def load_run(path: Path, listed: dict[Path, list[str]] | None = None) -> Run | None:
    """The run in ``path`` (None when it has no readable summary.json)."""
    summary = _read_json(path / "summary.json")
    if not isinstance(summary, dict):
        return None
    config: dict[str, Any] = {}
    if (path / "config.yaml").is_file():
        try:
            config = flat_dict(yaml.safe_load((path / "config.yaml").read_text()) or {})
        except yaml.YAMLError:
            config = {}
    return Run(path, summary, config, _overrides(path, listed or {}))


def _sweep_overrides(root: Path) -> dict[Path, list[str]]:
    """{job dir: overrides} from ``<root>/sweep_summary.jsonl``, if there is one."""
    out: dict[Path, list[str]] = {}
    try:
        lines = (root / "sweep_summary.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("overrides"), list) and row.get("run_dir"):
            out[(root / str(row["run_dir"])).resolve()] = [str(x) for x in row["overrides"]]
    return out


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run in the given run dirs and sweep dirs (searched recursively), in path order."""
    found: dict[Path, Run] = {}
    paths = list(paths)
    for p in map(Path, paths):
        if not p.is_dir():
            raise CompareError(f"{p} is not a directory; give a sweep dir or run dirs")
        dirs = [p] if (p / "summary.json").is_file() else sorted(
            (s.parent for s in p.rglob("summary.json")), key=_natural)
        listed = _sweep_overrides(p)
        for d in dirs:
            inside = d.relative_to(p).parts  # W&B's own files, not the path given
            if "wandb" in inside or d.resolve() in found or _process_copy(d):
                continue
            run = load_run(d, listed)
            if run is not None:
                found[d.resolve()] = run
    if not found:
        raise CompareError(f"no runs (dirs with summary.json) under {', '.join(map(str, paths))}")
    return list(found.values())


def _process_copy(d: Path) -> bool:
    """``<run>.process<i>``: another process's copy of a multi-process run (same metrics)."""
    suffix = d.name.rsplit(".", 1)[-1] if "." in d.name else ""
    return suffix.startswith("process") and suffix[7:].isdigit()


def _natural(p: Path) -> list:
    """Sort key: job dirs 0, 1, ..., 10 in numeric order."""
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.parts]


def _with_stats(g: Group) -> Group:
    for m in METRICS:
        vals = g.values(m.key)
        if vals:
            g.stats[m.key] = mean_std(vals)
    return g


def group_runs(runs: list[Run]) -> list[Group]:
    """Completed runs grouped by :meth:`Run.key`, with mean ± std of each metric."""
    groups: dict[tuple, Group] = {}
    for r in runs:
        if r.status != "completed":
            continue
        k = r.key()
        if k not in groups:
            groups[k] = Group({a: json.loads(b) for a, b in k}, [])
        groups[k].runs.append(r)
    return [_with_stats(g) for g in groups.values()]


def diverged_rows(runs: list[Run]) -> list[Group]:
    """One pseudo-group per diverged run: shown in the table, flagged, in no mean or best."""
    return [_with_stats(Group(r.params(), [r], status="diverged"))
            for r in runs if r.status == "diverged"]


def _override_key(text: str, known: set[str]) -> str | None:
    """The config key an override sets: ``optim.lr=0.1`` -> ``optim.lr``, ``framing=two_word``
    -> ``framing``, ``optim=sgd`` -> ``optim.name``; None for Hydra's own and unknown keys."""
    if "=" not in text:
        return None
    key = text.split("=", 1)[0].lstrip("+~")
    if key == "framing" or key in known:
        return key
    return f"{key}.name" if f"{key}.name" in known else None


def swept_keys(runs: list[Run]) -> list[str]:
    """The config keys whose value differs between runs (completed or not): "framing" first,
    then the keys in the order the overrides name them, then the rest by name. The seed and
    bookkeeping keys are left out, and so are the keys the framing label stands for."""
    params = [r.params() for r in runs if r.config]
    known = {k for p in params for k in p}
    values = {k: {json.dumps(p.get(k), sort_keys=True) for p in params} for k in known}
    order: list[str] = []
    given: dict[str, set[str]] = {}  # overrides name a swept key even where no config was written
    for r in runs:
        for o in r.overrides:
            k = _override_key(o, known)
            if k is not None:
                order += [k] if k not in order else []
                given.setdefault(k, set()).add(o)
    vary = {k for k in known | set(given)
            if len(values.get(k, ())) > 1 or len(given.get(k, ())) > 1}
    vary = {k for k in vary if k not in FRAMING_NAME_KEYS and k not in IGNORED_KEYS
            and not k.startswith(IGNORED_PREFIXES)}
    rest = sorted(vary - set(order) - {"framing"})
    return ["framing"] + [k for k in order if k in vary and k != "framing"] + rest


def sort_groups(groups: list[Group], keys: list[str]) -> list[Group]:
    def k(g: Group) -> tuple:
        vals = tuple((str(type(g.params.get(x)).__name__), g.params.get(x)) for x in keys)
        return vals + (g.status != "completed", str(g.runs[0].seed))

    return sorted(groups, key=k)


def metric_columns(groups: list[Group]) -> list[Metric]:
    return [m for m in METRICS if any(m.key in g.stats for g in groups)]


def not_completed(runs: list[Run]) -> list[Run]:
    """Failed, diverged, pruned and interrupted runs, in path order."""
    return [r for r in runs if r.status != "completed"]


failed_runs = not_completed  # the name older callers use
