"""A sweep as a table, plots and one self-contained HTML report.

:func:`write_report` takes the runs of :func:`lmjax.compare.aggregate.find_runs` and writes, in
``out_dir``:

* ``compare.csv`` and ``compare.md``: one row per group (runs that differ only in the seed): every
  swept config key, then ``mean ± std`` of each metric and ``n``; a diverged run is a row of its
  own, flagged, in no mean. compare.md adds the best group, the differences between groups that
  differ in one key (95% Welch intervals over seeds, :mod:`lmjax.compare.stats`) and the runs
  that did not complete, with their overrides and error or reason;
* the plots of :mod:`lmjax.compare.plots`;
* ``report.html``: all of the above in one file (PNGs inlined).

Numbers are printed with :func:`lmjax.fmt.num` (``1.0e+304``, never a 300-digit number).
"""

from __future__ import annotations

import base64
import csv
import html
import re
from pathlib import Path
from typing import Any

from lmjax.compare.aggregate import (METRIC, Group, Metric, Run, Stat, diverged_rows, group_runs,
                                     metric_columns, not_completed, show, sort_groups,
                                     swept_keys, titles)
from lmjax.compare.plots import curve_plots, metric_plots
from lmjax.compare.stats import Difference, best_group, differences, dimensions
from lmjax.fmt import num

ABOUT = ("Each row is a group of runs that differ only in the seed: mean ± sample standard "
         "deviation (ddof 1) over its n runs. *wall s* is the whole run; *start-up s* is set-up "
         "and compiling, until training ran at its steady pace; *train s* is the train steps at "
         "that pace (steps × time per step after the first epoch); the rest of the wall time is "
         "evaluation, checkpoints and samples. Only completed runs are in the means, the best "
         "group, the differences and the plots: a diverged run is a row of its own (status "
         "*diverged*), and failed, diverged and pruned runs are listed at the end.")
ABOUT_DIFF = ("Between every two groups that differ in one swept key: the difference of their "
              "means (B − A) and its 95% confidence interval over seeds (Welch's t, unequal "
              "variances). An interval that holds 0 means the difference is within seed noise; "
              "with fewer than 2 seeds in a group there is no interval.")


def cell(st: Stat | None, m: Metric) -> str:
    """``mean ± std`` (just the mean for one run) with :func:`lmjax.fmt.num`."""
    if st is None:
        return ""

    def one(x: float) -> str:
        return num(int(x)) if m.integer and float(x).is_integer() else num(x, m.digits)

    return one(st.mean) if st.n < 2 else f"{one(st.mean)} ± {one(st.std)}"


def table(groups: list[Group], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): the swept config keys, ``mean ± std`` per metric, n, and the status
    column when a row is not a group of completed runs."""
    cols = metric_columns(groups)
    flagged = any(g.status != "completed" for g in groups)
    title = titles(keys)
    header = [title[k] for k in keys] + [m.title for m in cols] + ["n"]
    header += ["status"] if flagged else []
    rows = []
    for g in sort_groups(groups, keys):
        row = [show(g.params.get(k)) for k in keys]
        row += [cell(g.stats.get(m.key), m) for m in cols] + [str(g.n)]
        rows.append(row + ([g.status] if flagged else []))
    return header, rows


def overrides_shown(runs: list[Run], keys: list[str]) -> dict[Path, str]:
    """Each run's overrides that differ between runs (``optim.lr=1e6``); for a run without
    recorded overrides, its swept config values."""
    given = [{o.split("=", 1)[0]: o for o in r.overrides} for r in runs]
    names = {k for g in given for k in g}
    varied = {k for k in names if len({g.get(k) for g in given}) > 1}  # absent is a value too
    title = titles(keys)
    out = {}
    for r in runs:
        shown = [o for o in r.overrides if o.split("=", 1)[0] in varied] or r.overrides
        if not shown and r.config:
            shown = [f"{title[k]}={show(r.params().get(k))}" for k in keys]
        out[r.path] = " ".join(shown)
    return out


def _where(path: Path, sources: list[str]) -> str:
    for s in sources:
        try:
            rel = path.resolve().relative_to(Path(s).resolve())
        except ValueError:
            continue
        return str(rel) if str(rel) != "." else str(path)
    return str(path)


def _best_line(best: tuple[Group, Metric] | None, keys: list[str], n_div: int) -> str:
    if best is None:
        return ""
    g, m = best
    label = g.label(keys) if keys else "the only group"
    text = (f"Best by {m.title} (lowest mean): {label}: {cell(g.stats[m.key], m)} "
            f"(n={g.stats[m.key].n}). Only completed runs count")
    return text + (f"; {n_div} diverged runs are flagged in the table and are in no mean, "
                   "best group, difference or plot." if n_div else ".")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = [_md_row(header), "|" + "---|" * len(header)] + [_md_row(r) for r in rows]
    return "\n".join(out) + "\n"


markdown = markdown_table  # the name older callers use

DIFF_HEADER = ["metric", "with", "differs in", "A", "B", "mean A (n)", "mean B (n)", "B − A",
               "95% CI", "reading"]


def num_nonzero(x: float, digits: int) -> str:
    """:func:`lmjax.fmt.num`, with more decimals where ``digits`` would round a nonzero value
    to 0 (an interval's end of -0.004 must not read "-0.00")."""
    for d in range(digits, digits + 4):
        s = num(x, d)
        try:
            if x == 0 or float(s) != 0:
                return s
        except ValueError:
            return s
    return num(x, digits + 4)


def diff_rows(diffs: list[Difference]) -> list[list[str]]:
    rows = []
    for d in diffs:
        k = METRIC[d.metric].digits
        ci = "—" if d.low is None else f"[{num_nonzero(d.low, k)}, {num_nonzero(d.high, k)}]"
        rows.append([METRIC[d.metric].title, d.context or "—", d.key, d.a, d.b,
                     f"{num(d.mean_a, k)} ({d.n_a})", f"{num(d.mean_b, k)} ({d.n_b})",
                     num_nonzero(d.diff, k), ci, d.reading])
    return rows


FAIL_HEADER = ["run", "status", "overrides", "error / reason"]


def fail_rows(runs: list[Run], keys: list[str], sources: list[str]) -> list[list[str]]:
    shown = overrides_shown(runs, keys)
    return [[_where(r.path, sources), r.status, shown[r.path], r.reason]
            for r in not_completed(runs)]


def _html_table(header: list[str], rows: list[list[str]], id_: str = "",
                classes: list[str] | None = None) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] != "completed" else ""
        trs.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    ident = f' id="{id_}"' if id_ else ""
    return (f'<div class="scroll"><table{ident}>\n<thead><tr>{th}</tr></thead>\n<tbody>\n'
            + "\n".join(trs) + "\n</tbody></table></div>")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 100%; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
tr.diverged td { background: #fde8e8; }
#differences td:last-child { white-space: normal; text-align: left; min-width: 16em; }
table.wrap td { white-space: normal; overflow-wrap: anywhere; text-align: left;
                max-width: 40em; }
figure { display: inline-block; margin: 0.5em; max-width: 100%; }
img { max-width: 100%; }
p { max-width: 60em; }
"""


def _em(text: str) -> str:
    """Escaped text with Markdown's *emphasis* as <em>."""
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", html.escape(text))


def html_report(title: str, sources: list[str], parts: dict[str, Any]) -> str:
    src = ", ".join(f"<code>{html.escape(s)}</code>" for s in sources)
    out = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f"<title>{html.escape(title)}</title>\n<style>{CSS}</style></head>\n<body>",
           f"<h1>{html.escape(title)}</h1>", f"<p>Runs from {src}. {_em(ABOUT)}</p>",
           _html_table(parts["header"], parts["rows"], "compare", parts["row_status"])]
    if parts["best"]:
        out.append(f'<p id="best">{html.escape(parts["best"])}</p>')
    if parts["diff_rows"]:
        out += ["<h2>Differences between groups that differ in one key</h2>",
                f"<p>{html.escape(ABOUT_DIFF)}</p>",
                _html_table(DIFF_HEADER, parts["diff_rows"], "differences")]
    if parts["fail_rows"]:
        t = _html_table(FAIL_HEADER, parts["fail_rows"], "not-completed")
        out += [f"<h2>Runs that did not complete ({len(parts['fail_rows'])})</h2>",
                t.replace("<table", '<table class="wrap"', 1)]
    out += ["<h2>Plots</h2>", "\n".join(_img(p) for p in parts["plots"]), "</body></html>\n"]
    return "\n".join(out)


def _markdown(title: str, sources: list[str], parts: dict[str, Any]) -> str:
    out = [f"# {title}\n", f"Runs from {', '.join(f'`{s}`' for s in sources)}. {ABOUT}\n",
           markdown_table(parts["header"], parts["rows"])]
    if parts["best"]:
        out.append(parts["best"] + "\n")
    if parts["diff_rows"]:
        out += ["## Differences between groups that differ in one key\n", ABOUT_DIFF + "\n",
                markdown_table(DIFF_HEADER, parts["diff_rows"])]
    if parts["fail_rows"]:
        out += [f"## Runs that did not complete ({len(parts['fail_rows'])})\n",
                markdown_table(FAIL_HEADER, parts["fail_rows"])]
    return "\n".join(out)


def write_report(runs: list[Run], out_dir: Path, sources: list[str]) -> dict[str, Any]:
    """Table (CSV, Markdown), plots and report.html in ``out_dir``; returns what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    diverged = diverged_rows(runs)
    keys = swept_keys(runs)
    header, rows = table(groups + diverged, keys)
    with open(out_dir / "compare.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    dims = dimensions(groups, keys)
    diffs = differences(groups, keys)
    best = best_group(groups)
    for pattern in ("*_vs_*.png", "curves_*.png"):  # this report's plots from an earlier run
        for stale in out_dir.glob(pattern):
            stale.unlink()
    plots = (metric_plots(groups, dims, out_dir) + curve_plots(groups, dims, out_dir)
             if groups else [])
    parts = {"header": header, "rows": rows, "plots": plots,
             "row_status": [g.status for g in sort_groups(groups + diverged, keys)],
             "best": _best_line(best, dims, len(diverged)), "diff_rows": diff_rows(diffs),
             "fail_rows": fail_rows(runs, keys, sources)}
    title = f"lmjax comparison: {', '.join(Path(s).name for s in sources)}"
    md = _markdown(title, sources, parts)
    (out_dir / "compare.md").write_text(md, encoding="utf-8")
    (out_dir / "report.html").write_text(html_report(title, sources, parts), encoding="utf-8")
    return {"groups": groups, "diverged": diverged, "keys": keys, "header": header,
            "rows": rows, "markdown": md, "plots": plots, "differences": diffs, "best": best,
            "not_completed": not_completed(runs), "failed": not_completed(runs),
            "out_dir": out_dir}
