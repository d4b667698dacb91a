"""A sweep as a table, plots and one self-contained HTML report.

:func:`write_report` takes the runs of :func:`lmjax.compare.aggregate.find_runs` and writes, in
``out_dir``:

* ``compare.csv`` and ``compare.md``: one row per group (runs that differ only in the seed), the
  config keys that vary between groups, then ``mean ± std`` of each metric and ``n``;
* ``<metric>_vs_<key>.png``: each metric against hidden size and against sequence length (the
  input width trained on: ``framing.seq_len``, or n for the n-word framings), when the runs
  differ in them; one line per framing (and per value of the other swept keys) with error bars
  of one standard deviation over seeds;
* ``curves_<metric>.png``: learning curves (validation loss and accuracy per epoch, mean over
  seeds), one panel per framing, one line per group;
* ``report.html``: all of the above in one file (PNGs inlined), plus the failed runs.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import Any

from lmjax.compare.aggregate import (Group, Run, failed_runs, group_runs, metric_columns, short,
                                     sort_groups, varying_keys)

X_KEYS = (("model.hidden_size", "hidden size"), ("framing.seq_len", "sequence length"))
PLOT_METRICS = ("val_accuracy", "oracle_val_accuracy", "val_perplexity", "val_bits_per_char",
                "val_top5_accuracy", "heldout_word_accuracy", "heldout_word_perplexity",
                "params", "wall_seconds", "tokens_per_second")
CURVE_METRICS = (("val_loss", "validation loss"), ("val_accuracy", "validation accuracy"))


def fmt(x: float) -> str:
    if not math.isfinite(x):
        return "nan"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}" if abs(x) >= 1 else f"{x:.4f}"


def table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): the varying config keys, ``mean ± std`` per metric, and n."""
    keys = varying_keys(groups)
    cols = metric_columns(groups)
    header = [short(k) for k in keys] + [title for _, title in cols] + ["n"]
    rows = []
    for g in sort_groups(groups, keys):
        row = [str(g.params.get(k)) for k in keys]
        for k, _ in cols:
            st = g.stats.get(k)
            row.append("" if st is None else fmt(st.mean) if st.n < 2
                       else f"{fmt(st.mean)} ± {fmt(st.std)}")
        rows.append(row + [str(g.n)])
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series_label(g: Group, keys: list[str], skip: str) -> str:
    parts = [str(g.params.get("framing"))]
    parts += [f"{short(k)}={g.params.get(k)}" for k in keys if k not in ("framing", skip)]
    return ", ".join(parts)


def x_value(g: Group, xkey: str) -> Any:
    """A group's value on a plot's x axis. For the sequence length that is the input width the
    runs trained on (summary ``seq_len``): ``framing.seq_len`` for char and sequence framings,
    n for n_words (1 for one_word), the longest line prefix for line_by_line."""
    if xkey == "framing.seq_len":
        widths = {r.summary.get("seq_len") for r in g.runs}
        if len(widths) == 1 and isinstance(next(iter(widths)), int):
            return next(iter(widths))
    return g.params.get(xkey)


def metric_plots(groups: list[Group], out_dir: Path) -> list[Path]:
    """Each metric against each swept x key, one line per framing (+ other swept keys)."""
    plt = _plt()
    keys = varying_keys(groups)
    written = []
    for xkey, xname in X_KEYS:
        xs = {x_value(g, xkey) for g in groups}
        if len(xs) < 2 or not all(isinstance(x, (int, float)) for x in xs):
            continue
        for metric in PLOT_METRICS:
            have = [g for g in groups if metric in g.stats]
            if not have:
                continue
            series: dict[str, list[tuple[float, float, float]]] = {}
            for g in have:
                st = g.stats[metric]
                series.setdefault(_series_label(g, keys, xkey), []).append(
                    (x_value(g, xkey), st.mean, 0.0 if st.n < 2 else st.std))
            fig, ax = plt.subplots(figsize=(6, 4))
            for label, pts in sorted(series.items()):
                pts.sort()
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                            marker="o", capsize=3, label=label)
            ax.set_xlabel(xname)
            ax.set_ylabel(metric)
            ax.set_title(f"{metric} vs {xname} (mean ± std over seeds)")
            if len(xs) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 8:
                ax.set_xscale("log", base=2)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out_dir / f"{metric}_vs_{xkey.rsplit('.', 1)[-1]}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
    return written


def _curve(run: Run, metric: str) -> dict[int, float]:
    path = run.path / "metrics.jsonl"
    out: dict[int, float] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row.get(metric), (int, float)) and "epoch" in row:
            out[int(row["epoch"])] = float(row[metric])
    return out


def curve_plots(groups: list[Group], out_dir: Path) -> list[Path]:
    """Validation loss and accuracy per epoch, mean over each group's seeds; a panel a framing."""
    plt = _plt()
    keys = varying_keys(groups)
    framings = sorted({str(g.params.get("framing")) for g in groups})
    written = []
    for metric, title in CURVE_METRICS:
        fig, axes = plt.subplots(1, len(framings), figsize=(4.2 * len(framings), 3.6),
                                 squeeze=False)
        drawn = False
        for ax, framing in zip(axes[0], framings):
            for g in groups:
                if str(g.params.get("framing")) != framing:
                    continue
                curves = [c for c in (_curve(r, metric) for r in g.runs) if c]
                epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
                if not epochs:
                    continue
                mean = [sum(c[e] for c in curves) / len(curves) for e in epochs]
                label = ", ".join(f"{short(k)}={g.params.get(k)}" for k in keys
                                  if k != "framing") or framing
                ax.plot(epochs, mean, label=f"{label} (n={len(curves)})")
                drawn = True
            ax.set_title(framing)
            ax.set_xlabel("epoch")
            ax.set_ylabel(title)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.tight_layout()
        if drawn:
            path = out_dir / f"curves_{metric}.png"
            fig.savefig(path, dpi=90)
            written.append(path)
        plt.close(fig)
    return written


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def html_report(title: str, header: list[str], rows: list[list[str]], plots: list[Path],
                failed: list[Run], sources: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                    for r in rows)
    fails = ""
    if failed:
        items = "".join(f"<li><code>{html.escape(str(r.path))}</code>: "
                        f"{html.escape(str(r.summary.get('error', r.status)))}</li>"
                        for r in failed)
        fails = f"<h2>Failed runs ({len(failed)})</h2><ul>{items}</ul>"
    figs = "\n".join(_img(p) for p in plots)
    src = ", ".join(f"<code>{html.escape(s)}</code>" for s in sources)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; }}
figure {{ display: inline-block; margin: 0.5em; }}
img {{ max-width: 640px; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Runs from {src}. Each row is a group of runs that differ only in the seed: mean ± sample
standard deviation over its n runs.</p>
<table id="compare">
<thead><tr>{th}</tr></thead>
<tbody>
{trs}
</tbody></table>
{fails}
<h2>Plots</h2>
{figs}
</body></html>
"""


def write_report(runs: list[Run], out_dir: Path, sources: list[str]) -> dict[str, Any]:
    """Table (CSV, Markdown), plots and report.html in ``out_dir``; returns what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    header, rows = table(groups)
    with open(out_dir / "compare.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    md = markdown(header, rows)
    (out_dir / "compare.md").write_text(md, encoding="utf-8")
    plots = (metric_plots(groups, out_dir) + curve_plots(groups, out_dir)) if groups else []
    failed = failed_runs(runs)
    title = f"lmjax comparison: {', '.join(Path(s).name for s in sources)}"
    (out_dir / "report.html").write_text(
        html_report(title, header, rows, plots, failed, sources), encoding="utf-8")
    return {"groups": groups, "header": header, "rows": rows, "markdown": md, "plots": plots,
            "failed": failed, "out_dir": out_dir}
