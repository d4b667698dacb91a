"""An Optuna search dir as a report: its trials best first, the optimisation history, the
metric per epoch of every trial (pruned ones end early) and Optuna's parameter importances.

:func:`find_studies` finds the studies of the given dirs (the search's ``multirun.yaml`` names
its storage and study; else ``optuna.db`` in the dir); :func:`write_search_report` writes, in
``out_dir``: ``search.csv``, ``search.md``, ``search_history.png``, ``search_curves.png``,
``search_importances.png`` and ``search.html`` (one self-contained file, images inlined).
"""

from __future__ import annotations

import base64
import csv
import html
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lmjax.fmt import num

DB_NAME = "optuna.db"


@dataclass(frozen=True)
class FoundStudy:
    path: Path  # the search dir
    storage: str
    name: str
    metric: str


def find_studies(paths: Iterable[str | Path]) -> list[FoundStudy]:
    """The Optuna studies of these dirs (none for a grid sweep or a run dir)."""
    out = []
    for p in map(Path, paths):
        cfg = _sweeper_config(p)
        db = p / DB_NAME
        if cfg is None and not db.is_file():
            continue
        cfg = cfg or {}
        storage = cfg.get("storage") or f"sqlite:///{db.resolve()}"
        if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
            continue  # a search that never opened its study
        names = [cfg["study_name"]] if cfg.get("study_name") else _study_names(storage)
        out += [FoundStudy(p, storage, n, str(cfg.get("metric", "value"))) for n in names]
    return out


def _sweeper_config(d: Path) -> dict | None:
    try:
        import yaml

        hydra = yaml.safe_load((d / "multirun.yaml").read_text())["hydra"]
        sweeper = hydra["sweeper"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if "lmjax_optuna_sweeper" not in str(sweeper.get("_target_", "")):
        return None
    return sweeper


def _study_names(storage: str) -> list[str]:
    import optuna

    return optuna.get_all_study_names(storage)


def load_study(found: FoundStudy) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=found.name, storage=found.storage)


_STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3, "WAITING": 4}


def ranked_trials(study: Any) -> list[Any]:
    """Complete trials best first, then pruned ones (by their last reported value), then
    failed, running and queued ones (by number)."""
    sign = 1 if study.direction.name == "MINIMIZE" else -1

    def key(t: Any) -> tuple:
        v = t.value if t.value is not None and math.isfinite(t.value) else None
        return (_STATE_ORDER.get(t.state.name, 5), v is None, sign * v if v is not None else 0,
                t.number)

    return sorted(study.get_trials(deepcopy=False), key=key)


def trial_table(study: Any, metric: str) -> tuple[list[str], list[list[str]]]:
    trials = ranked_trials(study)
    keys = sorted({k for t in trials for k in t.params})
    header = ["trial", "state", metric, *keys, "epochs", "seconds", "run dir"]
    rows = []
    for t in trials:
        secs = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append([str(t.number), t.state.name.lower(),
                     num(t.value) if t.value is not None else t.user_attrs.get("error", ""),
                     *[_param(t.params.get(k)) for k in keys],
                     str(len(t.intermediate_values)), f"{secs:.1f}" if secs is not None else "",
                     _rel(t.user_attrs.get("run_dir", ""))])
    return header, rows


def _param(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _rel(p: str) -> str:
    return Path(p).name if p else ""


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator) over the complete trials; empty
    when there are too few of them."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def write_plots(study: Any, out: Path, metric: str) -> dict[str, Path]:
    """Optuna's own matplotlib plots, saved as PNGs (a plot Optuna cannot draw is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    plots = {"history": (ovm.plot_optimization_history, "search_history.png"),
             "curves": (ovm.plot_intermediate_values, "search_curves.png")}
    if importances(study):
        plots["importances"] = (ovm.plot_param_importances, "search_importances.png")
    written = {}
    for what, (fn, name) in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = fn(study)
            except (ValueError, RuntimeError):
                continue
        ax = ax[0] if hasattr(ax, "__len__") else ax
        fig = ax.figure
        if what == "curves":
            ax.set_ylabel(metric)
            ax.set_xlabel("epoch")
            leg = ax.get_legend()
            if leg is not None and len(leg.get_texts()) > 12:
                leg.remove()
        elif what == "history":
            ax.set_ylabel(metric)
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written[what] = out / name
    return written


def write_search_report(found: FoundStudy, out: Path) -> dict[str, Any]:
    """Write the search's table, plots and search.html into ``out``; returns what was written
    (``markdown``: the table and the best trial, for printing)."""
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(found)
    header, rows = trial_table(study, found.metric)
    with open(out / "search.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    imp = importances(study)
    md = [f"## Search {found.name!r} ({found.path}): {found.metric}, "
          f"{study.direction.name.lower()}", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    if imp:
        md += ["", "Parameter importances (Optuna): "
               + ", ".join(f"{k} {v:.2f}" for k, v in imp.items())]
    md = "\n".join(md) + "\n"
    (out / "search.md").write_text(md)
    plots = write_plots(study, out, found.metric)
    (out / "search.html").write_text(_html(found, header, rows, imp, plots))
    return {"markdown": md, "plots": plots, "rows": rows, "importances": imp,
            "html": out / "search.html"}


def _html(found: FoundStudy, header: list[str], rows: list[list[str]], imp: dict[str, float],
          plots: dict[str, Path]) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    imgs = "".join(
        f'<h3>{e(title)}</h3><img alt="{e(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(plots[k].read_bytes()).decode()}">'
        for k, title in (("history", "Optimisation history"),
                         ("curves", f"{found.metric} per epoch (pruned trials stop early)"),
                         ("importances", "Parameter importances")) if k in plots)
    imp_p = ("<p>Parameter importances (Optuna): " + e(", ".join(
        f"{k} {v:.2f}" for k, v in imp.items())) + "</p>") if imp else ""
    return (f"<!doctype html><meta charset=utf-8><title>search {e(found.name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>"
            f"<h2>Search {e(found.name)} in {e(str(found.path))}</h2>"
            f"<p>Trials best first ({e(found.metric)}); storage {e(found.storage)}</p>"
            f"<table><tr>{th}</tr>{trs}</table>{imp_p}{imgs}")
