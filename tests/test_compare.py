"""experiments.compare: the table, the plots, the differences between groups and the runs that
did not complete. Most tests fabricate run dirs (summary.json, metrics.jsonl, config.yaml,
.hydra/overrides.yaml) with known numbers; one runs a real tiny sweep end to end."""

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import yaml
from scipy import stats

from lmjax.compare.aggregate import find_runs
from lmjax.compare.report import write_report
from lmjax.fmt import num

from .conftest import REPO, need_chromium

matplotlib.use("Agg")

BASE = {"name": "r", "framing.name": "n_words", "framing.n_words": 2, "framing.seq_len": 40,
        "model.hidden_size": 16, "model.num_layers": 1, "optim.name": "adam", "optim.lr": 0.001,
        "data.name": "jack_and_jill", "logger.name": "none", "train.epochs": 3}


def _nest(flat: dict) -> dict:
    out: dict = {}
    for k, v in flat.items():
        d = out
        *path, last = k.split(".")
        for p in path:
            d = d.setdefault(p, {})
        d[last] = v
    return out


def fake_run(d: Path, seed: int = 0, cfg: dict | None = None, status: str = "completed",
             overrides: list[str] | None = None, curve: list[float] | None = None,
             config: bool = True, **summary) -> Path:
    """A run dir as lmjax writes it: config.yaml, summary.json, metrics.jsonl and Hydra's
    overrides.yaml. ``curve``: val_loss per epoch (epoch e ends at step 10 e)."""
    d.mkdir(parents=True)
    c = {**BASE, "seed": seed, **(cfg or {})}
    if config:
        (d / "config.yaml").write_text(yaml.safe_dump(_nest(c)))
    s = {"status": status, "seed": seed}
    if status in ("completed", "diverged"):
        s.update(val_accuracy=0.5, val_loss=1.0, params=100, steps=30)
    s.update(summary)
    (d / "summary.json").write_text(json.dumps(s))
    if curve is not None:
        rows = [{"epoch": e + 1, "step": 10 * (e + 1), "val_loss": v,
                 "train_seconds": 0.1 * (e + 1)} for e, v in enumerate(curve)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if overrides is not None:
        (d / ".hydra").mkdir()
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return d


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report saves, by file name (so a test can read its axes)."""
    from matplotlib.figure import Figure

    saved: dict[str, Figure] = {}
    orig = Figure.savefig

    def savefig(self, fname, *a, **k):
        saved[Path(fname).name] = self
        return orig(self, fname, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def report(src: Path, out: Path) -> dict:
    return write_report(find_runs([src]), out, [str(src)])


def tick_labels(ax) -> list[str]:
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def csv_rows(out: Path) -> list[dict]:
    with open(out / "compare.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- plots ----------------------------------------------------------------------------------

def test_every_numeric_swept_key_is_plotted_on_a_fitting_axis(tmp_path, figures):
    """lr spans two decades: log axis; num_layers is an integer key: integer ticks."""
    i = 0
    for lr in (0.001, 0.01, 0.1):
        for layers in (1, 2):
            fake_run(tmp_path / "s" / str(i), cfg={"optim.lr": lr, "model.num_layers": layers},
                     val_accuracy=0.3 + lr + 0.1 * layers)
            i += 1
    res = report(tmp_path / "s", tmp_path / "out")
    names = {p.name for p in res["plots"]}
    assert {"val_accuracy_vs_lr.png", "val_accuracy_vs_num_layers.png"} <= names
    ax = figures["val_accuracy_vs_lr.png"].axes[0]
    assert ax.get_xscale() == "log"
    assert tick_labels(ax) == ["0.001", "0.01", "0.1"]
    ax = figures["val_accuracy_vs_num_layers.png"].axes[0]
    assert ax.get_xscale() == "linear"
    assert tick_labels(ax) == ["1", "2"]


def test_integer_keys_get_integer_ticks(tmp_path, figures):
    """The input width of one_word and two_word (1 and 2) is an integer: no 1.2, 1.4, ..."""
    for i, (n, seed) in enumerate([(1, 0), (1, 1), (2, 0), (2, 1)]):
        fake_run(tmp_path / "s" / str(i), seed=seed, cfg={"framing.n_words": n},
                 framing=["one_word", "two_word"][n - 1], seq_len=n,
                 val_accuracy=0.2 * n + 0.01 * seed)
    report(tmp_path / "s", tmp_path / "out")
    ax = figures["val_accuracy_vs_seq_len.png"].axes[0]
    labels = tick_labels(ax)
    assert labels and all(re.fullmatch(r"\d+", t) for t in labels), labels
    assert labels == ["1", "2"]


def test_no_plot_whose_values_are_all_equal(tmp_path, figures):
    for i, h in enumerate((8, 16, 32)):
        fake_run(tmp_path / "s" / str(i), cfg={"model.hidden_size": h}, oracle_val_accuracy=0.9,
                 val_accuracy=0.1 * i, params=100)
    res = report(tmp_path / "s", tmp_path / "out")
    names = {p.name for p in res["plots"]}
    assert "val_accuracy_vs_hidden_size.png" in names
    assert "oracle_val_accuracy_vs_hidden_size.png" not in names
    assert "params_vs_hidden_size.png" not in names
    assert not (tmp_path / "out" / "params_vs_hidden_size.png").exists()


def test_no_plot_whose_lines_are_all_flat(tmp_path):
    """The oracle depends on the framing only: against hidden size each framing's line is flat,
    though the two framings differ."""
    for i, (n, h) in enumerate([(1, 8), (1, 16), (2, 8), (2, 16)]):
        fake_run(tmp_path / "s" / str(i), cfg={"framing.n_words": n, "model.hidden_size": h},
                 framing=["one_word", "two_word"][n - 1], oracle_val_accuracy=0.8 + 0.1 * n,
                 val_accuracy=0.1 * n + 0.01 * h)
    res = report(tmp_path / "s", tmp_path / "out")
    names = {p.name for p in res["plots"]}
    assert "val_accuracy_vs_hidden_size.png" in names
    assert "oracle_val_accuracy_vs_hidden_size.png" not in names


def test_curves_show_a_std_band_or_each_seed(tmp_path, figures):
    """4 seeds: mean line with a band of one sample std; 2 seeds: each seed's line + mean."""
    wide = {s: [3.0 - 0.2 * e + 0.1 * s for e in range(4)] for s in range(4)}
    few = {s: [2.0 - 0.1 * e + 0.3 * s for e in range(4)] for s in range(2)}
    for s, c in wide.items():
        fake_run(tmp_path / "s" / f"a{s}", seed=s, cfg={"model.hidden_size": 8}, curve=c)
    for s, c in few.items():
        fake_run(tmp_path / "s" / f"b{s}", seed=s, cfg={"model.hidden_size": 32}, curve=c)
    report(tmp_path / "s", tmp_path / "out")
    ax = figures["curves_val_loss.png"].axes[0]
    bands = [c for c in ax.collections if c.get_paths()]
    assert len(bands) == 1  # only the 4-seed group has a band
    verts = bands[0].get_paths()[0].vertices
    arr = np.array(list(wide.values()))
    mean, sd = arr.mean(0), arr.std(0, ddof=1)
    at2 = sorted(v[1] for v in verts if abs(v[0] - 2) < 1e-9)
    assert at2[0] == pytest.approx(mean[1] - sd[1]) and at2[-1] == pytest.approx(mean[1] + sd[1])
    ys = [np.asarray(line.get_ydata(), float) for line in ax.lines]
    for c in few.values():  # each of the two seeds has its own line, and so has their mean
        assert any(len(y) == 4 and np.allclose(y, c) for y in ys)
    assert any(len(y) == 4 and np.allclose(y, np.mean(list(few.values()), 0)) for y in ys)
    assert all(re.fullmatch(r"\d+", t) for t in tick_labels(ax))  # epochs are integers


# --- table ----------------------------------------------------------------------------------

def test_every_swept_key_is_a_column(tmp_path):
    """lr is swept although only one lr value completed; data.name and optim.name are both
    swept and must not collapse into one "name" column."""
    i = 0
    for data in ("jack_and_jill", "nietzsche"):
        for opt in ("adam", "sgd"):
            fake_run(tmp_path / "s" / str(i), cfg={"data.name": data, "optim.name": opt},
                     overrides=[f"data={data}", f"optim={opt}", "optim.lr=0.001"])
            i += 1
    fake_run(tmp_path / "s" / str(i), cfg={"optim.lr": 1e6}, status="failed",
             error="TrainingDiverged: loss became nan", overrides=["optim.lr=1e6"])
    res = report(tmp_path / "s", tmp_path / "out")
    rows = csv_rows(tmp_path / "out")
    assert len(rows) == 4
    assert {"framing", "data.name", "optim.name", "lr"} <= set(rows[0]), list(rows[0])
    assert {(r["data.name"], r["optim.name"]) for r in rows} == {
        ("jack_and_jill", "adam"), ("jack_and_jill", "sgd"), ("nietzsche", "adam"),
        ("nietzsche", "sgd")}
    assert {r["lr"] for r in rows} == {"0.001"}
    assert "| lr |" in res["markdown"]


def test_test_metrics_are_columns_with_the_cache_beside(tmp_path):
    """The end-of-run test score is in the table (mean over seeds); the cached figure has a
    column of its own, and a sweep without it gets none."""
    for seed, (ppl, cache) in enumerate([(400.0, 300.0), (420.0, 310.0)]):
        fake_run(tmp_path / "a" / str(seed), seed=seed, test_perplexity=ppl,
                 test_cache_perplexity=cache)
    report(tmp_path / "a", tmp_path / "out")
    (row,) = csv_rows(tmp_path / "out")
    assert row["test ppl"].startswith("410.00 ±")  # mean ± std over the two seeds
    assert row["test ppl (cache)"].startswith("305.00 ±")
    fake_run(tmp_path / "b" / "0", test_perplexity=400.0)
    report(tmp_path / "b", tmp_path / "out_b")
    (row,) = csv_rows(tmp_path / "out_b")
    assert "test ppl" in row and "test ppl (cache)" not in row


def test_runs_that_did_not_complete_are_listed_with_overrides_and_reason(tmp_path):
    s = tmp_path / "s"
    fake_run(s / "0", cfg={"optim.lr": 0.01}, overrides=["optim.lr=0.01", "logger=none"])
    fake_run(s / "1", cfg={"model.hidden_size": 0}, status="failed", config=False,
             error="ConfigError: model.hidden_size must be > 0",
             overrides=["model.hidden_size=0", "logger=none"])
    fake_run(s / "2", cfg={"optim.lr": 0.5}, status="pruned", error="Pruned: trial 2 at epoch 1",
             overrides=["optim.lr=0.5", "logger=none"])
    fake_run(s / "3", cfg={"optim.lr": 1e6}, status="diverged", val_perplexity=1e304,
             reason="val loss 700.1 > 3 x ln(V) = 9.4 (the uniform guess)",
             overrides=["optim.lr=1e6", "logger=none"])
    res = report(s, tmp_path / "out")
    md, page = res["markdown"], (tmp_path / "out" / "report.html").read_text()
    section = md.split("did not complete", 1)[1]
    for line, want in (("model.hidden_size=0", "hidden_size must be &gt; 0"),
                       ("optim.lr=0.5", "trial 2 at epoch 1"), ("optim.lr=1e6", "ln(V) = 9.4")):
        row = next(x for x in section.splitlines() if line in x)
        assert want.replace("&gt;", ">") in row
        assert line in page and want in page
    assert "failed" in section and "pruned" in section and "diverged" in section
    assert "logger=none" not in section  # only what differs between runs is shown
    assert len(res["not_completed"]) == 3


def test_diverged_runs_are_flagged_kept_out_of_means_and_numbers_are_readable(tmp_path):
    s = tmp_path / "s"
    for seed, acc in ((0, 0.4), (1, 0.6)):
        fake_run(s / f"a{seed}", seed=seed, cfg={"optim.lr": 0.01}, val_accuracy=acc,
                 val_perplexity=20.0 + seed, val_loss=3.0 + seed)
    fake_run(s / "b0", seed=0, cfg={"optim.lr": 1e6}, status="diverged", val_accuracy=0.05,
             val_perplexity=1e304, val_loss=700.0, reason="val loss 700 > 3 x ln(V)")
    fake_run(s / "b1", seed=1, cfg={"optim.lr": 1e6}, val_accuracy=0.1, val_perplexity=30.0,
             val_loss=4.4)
    # the diverged seed of lr=0.01 is kept out of that group's mean
    fake_run(s / "a2", seed=2, cfg={"optim.lr": 0.01}, status="diverged", val_accuracy=0.0,
             val_perplexity=1e300, val_loss=690.0, reason="val loss 690 > 3 x ln(V)")
    res = report(s, tmp_path / "out")
    md = res["markdown"]
    assert "1.0e+304" in md and "1.0e+300" in md
    assert not re.search(r"\d{12}", md)  # no 300-digit number anywhere
    rows = csv_rows(tmp_path / "out")
    ok = [r for r in rows if r["status"] == "completed"]
    div = [r for r in rows if r["status"] == "diverged"]
    assert len(ok) == 2 and len(div) == 2
    g = next(r for r in ok if r["lr"] == "0.01")
    assert g["n"] == "2" and g["val acc"] == f"{num(0.5)} ± {num(np.std([0.4, 0.6], ddof=1))}"
    assert {r["val ppl"] for r in div} == {"1.0e+304", "1.0e+300"}
    best = next(x for x in md.splitlines() if x.startswith("Best"))
    assert "lr=0.01" in best and "diverged" in md.split("Best", 1)[1].split("\n\n", 1)[0]
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('class="diverged"') == 2 and "1.0e+304" in page


# --- timing ---------------------------------------------------------------------------------

def test_wall_time_is_split_into_start_up_and_training(tmp_path):
    """Seed 0 compiled (5 s before its first 10-step chunk ended), seed 1 found the step
    compiled; both train at 10 ms a step after that. Start-up differs, training time does not."""
    s = tmp_path / "s"
    for seed, first, t1 in ((0, 5.0, 4.5), (1, 0.3, 0.5)):
        d = fake_run(s / str(seed), seed=seed, steps=100, first_chunk_seconds=first,
                     first_chunk_steps=10, train_seconds=t1 + 0.5, wall_seconds=first + 2.0)
        rows = [{"epoch": 1, "step": 50, "train_seconds": t1, "val_loss": 1.0},
                {"epoch": 2, "step": 100, "train_seconds": t1 + 0.5, "val_loss": 0.9}]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = report(s, tmp_path / "out")
    (g,) = res["groups"]
    assert g.stats["startup_seconds"].mean == pytest.approx((4.9 + 0.2) / 2)
    assert g.stats["train_steady_seconds"].mean == pytest.approx(1.0)
    assert g.stats["train_steady_seconds"].std == pytest.approx(0.0, abs=1e-9)
    (row,) = csv_rows(tmp_path / "out")
    assert row["train s"] == f"{num(1.0, 3)} ± {num(0.0, 3)}"
    assert row["start-up s"].startswith(num(2.55, 3))


def test_one_logged_epoch_bounds_the_steady_pace_from_above():
    """No second epoch to time: the pace per step is the smaller of train_seconds / steps
    (0.02 s, with the compilation) and the time after the first chunk per step (1.5 s / 90)."""
    from lmjax.compare.timing import timing_split

    got = timing_split({"steps": 100, "train_seconds": 2.0, "wall_seconds": 3.0,
                        "first_chunk_seconds": 1.5, "first_chunk_steps": 10,
                        "tokens_per_second": 50.0}, [{"step": 100, "train_seconds": 2.0}])
    rate = 1.5 / 90
    assert got["train_steady_seconds"] == pytest.approx(100 * rate)
    assert got["startup_seconds"] == pytest.approx(1.5 - 10 * rate)
    assert got["tokens_per_second"] == pytest.approx(50.0 * 2.0 / (100 * rate))
    assert timing_split({"status": "failed"}, []) == {}


# --- differences between groups --------------------------------------------------------------

def _welch(a, b):
    """Welch's 95% interval of mean(b) - mean(a), written out from the textbook."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    h = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    d = np.mean(b) - np.mean(a)
    return d, d - h, d + h


def test_groups_that_differ_in_one_key_get_a_welch_interval(tmp_path):
    s = tmp_path / "s"
    accs = {("one_word", 16): [0.50, 0.52, 0.55], ("two_word", 16): [0.60, 0.61, 0.65],
            ("two_word", 32): [0.58, 0.66]}
    for (framing, h), vals in accs.items():
        for seed, v in enumerate(vals):
            fake_run(s / f"{framing}{h}_{seed}", seed=seed,
                     cfg={"framing.n_words": 1 if framing == "one_word" else 2,
                          "model.hidden_size": h}, framing=framing, val_accuracy=v)
    fake_run(s / "one32_0", cfg={"framing.n_words": 1, "model.hidden_size": 32},
             framing="one_word", val_accuracy=0.4)
    res = report(s, tmp_path / "out")
    diffs = [d for d in res["differences"] if d.metric == "val_accuracy"]
    # one_word,16 vs two_word,32 differ in two keys: not compared
    assert sorted((d.key, d.context, d.a, d.b) for d in diffs) == [
        ("framing", "hidden_size=16", "one_word", "two_word"),
        ("framing", "hidden_size=32", "one_word", "two_word"),
        ("hidden_size", "framing=one_word", "16", "32"),
        ("hidden_size", "framing=two_word", "16", "32")]
    d = next(d for d in diffs if d.key == "framing" and d.context == "hidden_size=16")
    want = _welch(accs[("one_word", 16)], accs[("two_word", 16)])
    assert (d.diff, d.low, d.high) == pytest.approx(want)
    assert d.low > 0  # two_word's advantage is more than seed noise here
    md = res["markdown"]
    line = next(x for x in md.splitlines() if "hidden_size=16" in x and "one_word" in x
                and "val acc" in x)
    assert f"[{num(want[1])}, {num(want[2])}]" in line and "beyond seed noise" in line
    # hidden 16 vs 32 for two_word: the interval spans 0
    d = next(d for d in diffs if d.key == "hidden_size" and d.context == "framing=two_word")
    assert d.low < 0 < d.high and d.reading.startswith("within seed noise")
    # one_word at hidden 32 has one seed: no interval, said so
    d = next(d for d in diffs if d.key == "hidden_size" and d.context == "framing=one_word")
    assert d.low is None and "n < 2" in d.reading
    assert "n < 2" in md


# --- the page -------------------------------------------------------------------------------



def test_the_page_never_runs_wider_than_the_window(tmp_path):
    chromium = need_chromium()
    s = tmp_path / "s"
    for i, lr in enumerate((0.01, 0.1, 1.0, 1e6)):
        for seed in (0, 1):
            fake_run(s / f"{i}_{seed}", seed=seed, cfg={"optim.lr": lr},
                     val_perplexity=10.0 ** (150 + i + seed) if lr > 1 else 20.0 + i,
                     val_accuracy=0.1 * i, tokens_per_second=1e15, wall_seconds=1e9)
    fake_run(s / "f", cfg={"optim.lr": 1e7}, status="failed",
             error="TrainingDiverged: " + "a very long message " * 40)
    report(s, tmp_path / "out")
    page = tmp_path / "out" / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace(
        "</body>", "<script>document.body.setAttribute('data-fits', String("
        "document.documentElement.scrollWidth <= window.innerWidth));"
        "document.body.setAttribute('data-width', String(document.documentElement.scrollWidth"
        "));</script></body>"))
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--window-size=1000,800", "--virtual-time-budget=3000", "--dump-dom",
                        probe.as_uri()], capture_output=True, text=True, timeout=60)
    m = re.search(r'data-fits="(\w+)" data-width="(\d+)"', r.stdout)
    assert m, r.stderr[-2000:]
    assert m.group(1) == "true", f"page is {m.group(2)} px wide in a 1000 px window"


# --- a real sweep ---------------------------------------------------------------------------

def test_a_real_lr_sweep_end_to_end(tmp_path, figures, capsys):
    """two_word on the rhyme, lr 0.001 / 0.1 x seeds 0, 1, 2 epochs; then the entry point."""
    from experiments.compare import main

    d = tmp_path / "lr"
    r = subprocess.run([sys.executable, "-m", "experiments.run", "-m", "framing=two_word",
                        "optim.lr=0.001,0.1", "seed=0,1", "model.hidden_size=8", "logger=none",
                        "train.epochs=2", "train.progress=false", "sample.length=2",
                        f"hydra.sweep.dir={d}"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert main([str(d)]) == 0
    out = capsys.readouterr().out
    assert "| lr |" in out and out.rstrip().splitlines()[-1].startswith("wrote")
    assert (d / "compare" / "report.html").is_file()
    rows = csv_rows(d / "compare")
    assert [r["lr"] for r in rows] == ["0.001", "0.1"] and {r["n"] for r in rows} == {"2"}
    assert {"start-up s", "train s", "wall s"} <= set(rows[0])
    for run in find_runs([d]):  # the split is within what was measured
        s = run.summary
        assert 0 < run.derived["train_steady_seconds"] <= s["train_seconds"] + 1e-9
        assert 0 <= run.derived["startup_seconds"] <= s["first_chunk_seconds"] + 1e-9
    ax = figures["val_loss_vs_lr.png"].axes[0]
    assert ax.get_xscale() == "log" and tick_labels(ax) == ["0.001", "0.1"]
    assert "Welch" in out and "| lr | 0.001 | 0.1 |" in out
    assert len(list((d / "compare").glob("curves_*.png"))) == 2
