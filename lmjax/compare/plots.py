"""The comparison's plots (PNG): each metric against each numeric swept key, and learning curves.

* ``<metric>_vs_<key>.png``: group means against every numeric swept key (and against the input
  width, see :func:`x_value`), one line per framing and per value of the other swept keys,
  error bars of one sample std over seeds. A key whose values span a decade or more (learning
  rates) gets a log axis; ticks sit at the swept values, integers as integers. A plot whose
  values are all equal is not drawn.
* ``curves_<metric>.png``: validation loss and accuracy per epoch, a panel per framing, one
  colour per group: the mean over seeds with a band of one std (more than
  :data:`FEW_SEEDS` seeds), or each seed's own thin line and their mean (2 to FEW_SEEDS seeds).

Only completed runs are drawn: diverged, failed and pruned runs are in no group.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lmjax.compare.aggregate import METRIC, Group, show, titles

X_NAMES = {"model.hidden_size": "hidden size", "framing.seq_len": "sequence length",
           "optim.lr": "learning rate"}
PLOT_METRICS = ("val_accuracy", "oracle_val_accuracy", "val_loss", "val_perplexity",
                "val_bits_per_char", "val_top5_accuracy", "heldout_word_accuracy",
                "heldout_word_perplexity", "params", "startup_seconds", "train_steady_seconds",
                "tokens_per_second")
CURVE_METRICS = (("val_loss", "validation loss"), ("val_accuracy", "validation accuracy"))
FEW_SEEDS = 3  # up to this many seeds, curves show each seed instead of a band
MAX_TICKS = 12  # up to this many swept values, the ticks sit at the values


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def x_value(g: Group, xkey: str) -> Any:
    """A group's value on a plot's x axis. For the sequence length that is the input width the
    runs trained on (summary ``seq_len``): ``framing.seq_len`` for char and sequence framings,
    n for n_words (1 for one_word), the longest line prefix for line_by_line."""
    if xkey == "framing.seq_len":
        widths = {r.summary.get("seq_len") for r in g.runs}
        if len(widths) == 1 and isinstance(next(iter(widths)), int):
            return next(iter(widths))
    return g.params.get(xkey)


def x_keys(groups: list[Group], keys: list[str]) -> list[str]:
    """The swept keys with a number for every group and 2 or more values, and the input width
    (``framing.seq_len``) when it differs between groups."""
    out = []
    for k in keys + ([] if "framing.seq_len" in keys else ["framing.seq_len"]):
        xs = [x_value(g, k) for g in groups]
        if all(_is_num(x) for x in xs) and len(set(xs)) > 1:
            out.append(k)
    return out


def _all_equal(values: list[float]) -> bool:
    return all(math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values)


def _flat(series: dict[str, list[tuple[float, float, float]]]) -> bool:
    """Nothing changes along x: every line of 2 or more points is flat (params against the
    input width at one hidden size), or, with single points only, all values are equal."""
    lines = [[p[1] for p in pts] for pts in series.values() if len(pts) > 1]
    if lines:
        return all(_all_equal(v) for v in lines)
    return _all_equal([p[1] for pts in series.values() for p in pts])


def _x_axis(ax, xs: list[float]) -> None:
    """Log scale when the values span a decade or more; ticks at the values (integers printed
    as integers) when there are few, else integer-only ticks for integer keys."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    values = sorted(set(xs))
    integer = all(float(x).is_integer() and not isinstance(x, float) for x in values)
    if min(values) > 0 and max(values) / min(values) >= 10:
        ax.set_xscale("log")
    if len(values) <= MAX_TICKS:
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.set_xticklabels([show(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
    elif integer:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def metric_figure(groups: list[Group], metric: str, xkey: str, dims: list[str]):
    """``metric`` against ``xkey``, one line per value of the other dimensions; None when there
    is nothing to show (fewer than 2 x values, or every value equal)."""
    have = [g for g in groups if metric in g.stats]
    xs = [x_value(g, xkey) for g in have]
    if len(set(xs)) < 2:
        return None
    title = titles(dims)
    widths = _widths_of_framings(have, xs) if xkey not in dims else None
    series: dict[str, list[tuple[float, float, float]]] = {}
    for g, x in zip(have, xs):
        st = g.stats[metric]
        label = ", ".join(([] if widths else [show(g.params.get("framing"))]) + [
            f"{title[k]}={show(g.params.get(k))}" for k in dims if k not in ("framing", xkey)])
        series.setdefault(label, []).append((x, st.mean, 0.0 if st.n < 2 else st.std))
    if _flat(series):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", capsize=3, label=label or None)
    xname = "input width" if widths else X_NAMES.get(xkey, xkey)
    _x_axis(ax, xs)
    ax.set_xlabel(xname if not widths else "input width (" + ", ".join(
        f"{f} = {show(x)}" for f, x in widths) + ")")
    m = METRIC[metric]
    ax.set_ylabel(m.title)
    means = [g.stats[metric].mean for g in have]
    if min(means) > 0 and max(means) / min(means) >= 100 and max(means) < 1e100:
        ax.set_yscale("log")
    ax.set_title(f"{m.title} vs {xname}\n(mean ± 1 std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _widths_of_framings(have: list[Group], xs: list) -> list[tuple[str, Any]] | None:
    """[(framing, x)] when x follows from the framing (the input width of one_word, two_word,
    ...): then the framing names the x values and does not split the lines; else None."""
    seen: dict[str, set] = {}
    for g, x in zip(have, xs):
        seen.setdefault(show(g.params.get("framing")), set()).add(x)
    if len(seen) < 2 or any(len(v) != 1 for v in seen.values()):
        return None
    return sorted(((f, next(iter(v))) for f, v in seen.items()), key=lambda t: t[1])


def metric_plots(groups: list[Group], dims: list[str], out_dir: Path) -> list[Path]:
    """Each metric of :data:`PLOT_METRICS` against each of :func:`x_keys`."""
    plt = _plt()
    written = []
    for xkey in x_keys(groups, dims):
        for metric in PLOT_METRICS:
            fig = metric_figure(groups, metric, xkey, dims)
            if fig is None:
                continue
            path = out_dir / f"{metric}_vs_{xkey.rsplit('.', 1)[-1]}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
    return written


def _curves(g: Group, metric: str) -> tuple[list[int], list[list[float]]]:
    """(epochs every run of ``g`` logged ``metric`` at, one list of values per run)."""
    per_run = []
    for r in g.runs:
        c = {int(row["epoch"]): float(row[metric]) for row in r.rows
             if _is_num(row.get(metric)) and _is_num(row.get("epoch"))}
        if c:
            per_run.append(c)
    epochs = sorted(set.intersection(*(set(c) for c in per_run))) if per_run else []
    return epochs, [[c[e] for e in epochs] for c in per_run]


def _draw_group(ax, epochs: list[int], curves: list[list[float]], color: str, label: str):
    import numpy as np

    arr = np.array(curves)
    mean = arr.mean(axis=0)
    n = len(curves)
    if 1 < n <= FEW_SEEDS:
        for c in curves:
            ax.plot(epochs, c, color=color, lw=0.8, alpha=0.45)
        label += f" (n={n}: mean, thin = each seed)"
    elif n > FEW_SEEDS:
        sd = arr.std(axis=0, ddof=1)
        ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
        label += f" (n={n}: mean ± 1 std)"
    ax.plot(epochs, mean, color=color, lw=1.8, label=label, marker="." if len(epochs) < 20
            else None)


def curve_plots(groups: list[Group], dims: list[str], out_dir: Path) -> list[Path]:
    """Validation loss and accuracy per epoch; a panel per framing, a colour per group."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    title = titles(dims)
    framings = sorted({show(g.params.get("framing")) for g in groups})
    written = []
    for metric, name in CURVE_METRICS:
        fig, axes = plt.subplots(1, len(framings), figsize=(4.6 * len(framings), 3.8),
                                 squeeze=False)
        drawn = False
        for ax, framing in zip(axes[0], framings):
            mine = [g for g in groups if show(g.params.get("framing")) == framing]
            for i, g in enumerate(mine):
                epochs, curves = _curves(g, metric)
                if not epochs:
                    continue
                label = ", ".join(f"{title[k]}={show(g.params.get(k))}" for k in dims
                                  if k != "framing") or framing
                _draw_group(ax, epochs, curves, f"C{i % 10}", label)
                drawn = True
            ax.set_title(framing, fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.tight_layout()
        if drawn:
            path = out_dir / f"curves_{metric}.png"
            fig.savefig(path, dpi=90)
            written.append(path)
        plt.close(fig)
    return written
