"""Is one group better than another by more than seed noise? Differences of group means with a
95% confidence interval (Welch's t, which does not assume equal variances), for every two groups
that differ in one swept key, and the best group.

A group's seeds are its samples: with n seeds a group mean has n - 1 degrees of freedom for its
spread. With fewer than 2 seeds in either group no interval can be computed (there is no
estimate of the spread), and the reading says so.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from itertools import combinations

from scipy import stats

from lmjax.compare.aggregate import METRIC, Group, Metric, show, sort_groups, titles

LEVEL = 0.95
# per pair of groups: the first accuracy and the first loss metric that both groups report
# (held-out word metrics first: they score every framing on the same words)
DIFF_METRICS = (("heldout_word_accuracy", "val_accuracy"), ("heldout_word_perplexity", "val_loss"))
# the best group: lowest mean of the first of these that every group reports
RANK_METRICS = ("heldout_word_perplexity", "val_bits_per_char", "val_loss")


@dataclass
class Difference:
    metric: str  # summary key
    key: str  # title of the one key the two groups differ in
    context: str  # the other swept keys' shared values ("hidden_size=16"), "" if none
    a: str  # A's value of that key (the smaller)
    b: str
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    diff: float  # mean_b - mean_a
    low: float | None  # the 95% interval of diff; None when n < 2 in a group
    high: float | None
    reading: str


def welch_interval(a: list[float], b: list[float], level: float = LEVEL
                   ) -> tuple[float, float | None, float | None]:
    """(mean(b) - mean(a), low, high): Welch's ``level`` interval of the difference of the
    means; low = high = None when either sample has fewer than 2 values."""
    diff = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return diff, diff, diff  # every seed gave the same value: no spread to allow for
    with warnings.catch_warnings():  # one sample without spread: scipy warns, the answer holds
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(level)
    return diff, float(ci.low), float(ci.high)


def _reading(m: Metric, a: str, b: str, diff: float, low: float | None, high: float | None,
             n_a: int, n_b: int) -> str:
    if low is None or high is None:
        few = " and ".join(f"{v} has n = {n}" for v, n in ((a, n_a), (b, n_b)) if n < 2)
        return f"n < 2 ({few}): no interval, it needs 2 or more seeds in each group"
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval (values out of range)"
    if low <= 0 <= high:
        return "within seed noise (the interval holds 0)"
    higher = b if diff > 0 else a
    same = " (every seed gave the same value)" if low == high else ""
    if m.lower_is_better is None:
        return f"{higher} higher, beyond seed noise{same}"
    better = (a if diff > 0 else b) if m.lower_is_better else higher
    return f"{better} better, beyond seed noise{same}"


def dimensions(groups: list[Group], keys: list[str]) -> list[str]:
    """The swept keys that are dimensions of the sweep: a ``framing.*`` key whose value follows
    from the framing (``framing.step`` of char vs sequence) is part of the framing, not one."""
    out = []
    for k in keys:
        if k.startswith("framing.") and "framing" in keys:
            by_framing: dict[str, set[str]] = {}
            for g in groups:
                by_framing.setdefault(show(g.params.get("framing")), set()).add(
                    show(g.params.get(k)))
            if all(len(v) == 1 for v in by_framing.values()):
                continue
        out.append(k)
    return out


def _order(g: Group, k: str) -> tuple:
    v = g.params.get(k)
    return (type(v).__name__, v if isinstance(v, (int, float, str)) else show(v))


def differences(groups: list[Group], keys: list[str]) -> list[Difference]:
    """For every two groups that differ in exactly one dimension (:func:`dimensions`), the
    difference of their means of :data:`DIFF_METRICS` with its Welch interval over seeds."""
    dims = dimensions(groups, keys)
    title = titles(keys)
    out = []
    for g, h in combinations(sort_groups(groups, keys), 2):
        differ = [k for k in dims if show(g.params.get(k)) != show(h.params.get(k))]
        if len(differ) != 1:
            continue
        k = differ[0]
        ga, gb = sorted((g, h), key=lambda x: _order(x, k))
        context = ", ".join(f"{title[o]}={show(ga.params.get(o))}" for o in dims if o != k)
        for choices in DIFF_METRICS:
            metric = next((c for c in choices if ga.values(c) and gb.values(c)), None)
            if metric is None:
                continue
            va, vb = ga.values(metric), gb.values(metric)
            diff, low, high = welch_interval(va, vb)
            a, b = show(ga.params.get(k)), show(gb.params.get(k))
            out.append(Difference(
                metric, title[k], context, a, b, statistics.fmean(va), statistics.fmean(vb),
                len(va), len(vb), diff, low, high,
                _reading(METRIC[metric], a, b, diff, low, high, len(va), len(vb))))
    return sorted(out, key=lambda d: (DIFF_ORDER.get(d.metric, 9), d.key))  # stable


DIFF_ORDER = {m: i for i, m in enumerate(c for cs in DIFF_METRICS for c in cs)}


def best_group(groups: list[Group]) -> tuple[Group, Metric] | None:
    """The group with the lowest mean of the first :data:`RANK_METRICS` every group reports
    (completed runs only: a diverged run is in no group); None for fewer than 2 groups."""
    for key in RANK_METRICS:
        if len(groups) > 1 and all(key in g.stats for g in groups):
            return min(groups, key=lambda g: g.stats[key].mean), METRIC[key]
    return None
