"""Compare the runs of a sweep (or any run dirs): a table, plots and an HTML report.

usage: python -m experiments.compare PATH [PATH ...] [--out DIR]

PATH: a sweep dir (``results/sweeps/...``: every run below it is read) or run dirs. Runs that
differ only in their seed form one group; the table has every swept key as a column and, per
group, mean ± std and n over the seeds of val accuracy, oracle accuracy, val loss, val
perplexity or bits per char, top-5 accuracy, the held-out word metrics (word models), params,
wall time split into start-up (set-up and compiling) and steady training time, and tokens/s.
Groups that differ in one key get the difference of their means with a 95% interval over
seeds (Welch's t). Written to ``--out`` (default: ``<first PATH>/compare``): compare.csv,
compare.md, PNG plots and report.html (one self-contained file: open it in a browser).
Failed, diverged and pruned runs are listed with their overrides and error, not averaged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmjax.cli import friendly_errors


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.compare",
                                 description=__doc__.split("\n\n")[0],
                                 epilog="See docs/sweeps.md.")
    ap.add_argument("paths", nargs="+", metavar="PATH", help="sweep dirs or run dirs")
    ap.add_argument("--out", type=Path, default=None,
                    help="where to write the table, plots and report.html "
                         "(default: <first PATH>/compare)")
    args = ap.parse_args(argv)
    from lmjax.compare.aggregate import find_runs
    from lmjax.compare.report import write_report

    runs = find_runs(args.paths)
    out = args.out or Path(args.paths[0]) / "compare"
    _search_reports(args.paths, out)  # an Optuna search dir: its trials, history, importances
    res = write_report(runs, out, [str(p) for p in args.paths])
    print(res["markdown"], end="")
    n_ok, left = sum(g.n for g in res["groups"]), res["not_completed"]
    print(f"\n{n_ok} completed runs in {len(res['groups'])} groups"
          + (f", {len(left)} did not complete (listed above)" if left else "")
          + f"; {len(res['plots'])} plots")
    print(f"wrote {out / 'compare.csv'}, {out / 'compare.md'}, {out / 'report.html'}")
    return 0


def _search_reports(paths: list[str], out: Path) -> None:
    from lmjax.compare.search import find_studies, write_search_report

    for found in find_studies(paths):
        res = write_search_report(found, out)
        print(res["markdown"])
        print(f"wrote {res['html']} ({len(res['plots'])} plots)\n")


if __name__ == "__main__":
    sys.exit(main())
