"""Read run dirs, group them by everything but the seed, and aggregate mean ± std over seeds.

A *run* is a directory holding ``summary.json`` (and ``config.yaml`` unless it failed before
writing one). A *group* is the set of completed runs whose configs agree on every key that shapes
training except ``seed`` (see :data:`IGNORED_KEYS`); its metrics are the mean, the sample
standard deviation (ddof = 1; NaN with one run) and the count n of the runs that report them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from lmjax.config import flat_dict
from lmjax.errors import LmjaxError

# (summary key, column title) in table order; columns no run reports are left out
METRICS: tuple[tuple[str, str], ...] = (
    ("val_accuracy", "val acc"),
    ("oracle_val_accuracy", "oracle acc"),
    ("val_perplexity", "val ppl"),
    ("val_bits_per_char", "val bpc"),
    ("val_top5_accuracy", "top-5 acc"),
    ("heldout_word_accuracy", "held-out word acc"),
    ("heldout_word_perplexity", "held-out word ppl"),
    ("params", "params"),
    ("wall_seconds", "wall s"),
    ("tokens_per_second", "tokens/s"),
)
# config keys that do not define a group: the seed, names, logging, bookkeeping
IGNORED_KEYS = frozenset({
    "seed", "name", "resume", "overwrite", "train.progress", "train.checkpoint_every",
    "train.checkpoint_every_steps", "train.checkpoint_every_s", "train.keep_checkpoints",
    "train.devices", "train.parallel_seeds", "data.data_dir",
})
IGNORED_PREFIXES = ("logger.", "sample.")


class CompareError(LmjaxError):
    """Nothing to compare, or a path that holds no runs."""


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]  # flattened ("model.hidden_size": 16, ...); {} if none was written

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "completed"))

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

    def key(self) -> tuple:
        """Everything but the seed (and bookkeeping) that shapes training."""
        items = {k: v for k, v in self.config.items()
                 if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)}
        items["framing"] = self.framing
        return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in items.items()))


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

    @property
    def n(self) -> int:
        return len(self.runs)

    def label(self, keys: Iterable[str]) -> str:
        return ", ".join(f"{short(k)}={self.params.get(k)}" for k in keys)


def short(key: str) -> str:
    """A column title for a config key: ``model.hidden_size`` -> ``hidden_size``."""
    return key.rsplit(".", 1)[-1] if key.count(".") == 1 else key


def mean_std(values: list[float]) -> Stat:
    """Mean and sample standard deviation (ddof = 1, NaN for a single value)."""
    n = len(values)
    if n == 0:
        return Stat(math.nan, math.nan, 0)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return Stat(m, sd, n)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_run(path: Path) -> Run | None:
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
    return Run(path, summary, config)


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run in the given run dirs and sweep dirs (searched recursively), in path order."""
    found: dict[Path, Run] = {}
    for p in map(Path, paths):
        if not p.is_dir():
            raise CompareError(f"{p} is not a directory; give a sweep dir or run dirs")
        dirs = [p] if (p / "summary.json").is_file() else sorted(
            (s.parent for s in p.rglob("summary.json")), key=_natural)
        for d in dirs:
            inside = d.relative_to(p).parts  # W&B's own files, not the path given
            if "wandb" in inside or d.resolve() in found or _process_copy(d):
                continue
            run = load_run(d)
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


def group_runs(runs: list[Run]) -> list[Group]:
    """Completed runs grouped by :meth:`Run.key`, with mean ± std of each metric."""
    groups: dict[tuple, Group] = {}
    for r in runs:
        if r.status != "completed":
            continue
        k = r.key()
        if k not in groups:
            params = {a: json.loads(b) for a, b in k}
            groups[k] = Group(params, [])
        groups[k].runs.append(r)
    out = list(groups.values())
    for g in out:
        for key, _ in METRICS:
            vals = [float(r.summary[key]) for r in g.runs
                    if isinstance(r.summary.get(key), (int, float))
                    and math.isfinite(float(r.summary[key]))]
            if vals:
                g.stats[key] = mean_std(vals)
    return out


def varying_keys(groups: list[Group]) -> list[str]:
    """Config keys whose value differs between groups ("framing" first, then by name)."""
    keys = sorted({k for g in groups for k in g.params})
    vary = [k for k in keys if len({json.dumps(g.params.get(k)) for g in groups}) > 1]
    vary = [k for k in vary if k not in ("framing.name", "framing.n_words")]
    return ["framing"] + [k for k in vary if k != "framing"]


def sort_groups(groups: list[Group], keys: list[str]) -> list[Group]:
    def k(g: Group) -> tuple:
        return tuple((str(type(g.params.get(x)).__name__), g.params.get(x)) for x in keys)

    return sorted(groups, key=k)


def metric_columns(groups: list[Group]) -> list[tuple[str, str]]:
    return [(k, title) for k, title in METRICS if any(k in g.stats for g in groups)]


def failed_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status != "completed"]
