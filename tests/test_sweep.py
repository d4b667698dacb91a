"""Sweeps: Hydra multirun jobs, failure isolation, W&B per job, launchers, the comparison report."""

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lmjax.compare.aggregate import find_runs, group_runs, mean_std
from lmjax.compare.report import write_report
from lmjax.config import Config, DataConfig, FramingConfig
from lmjax.data.vocab import Vocab, tokenize_lines
from lmjax.train.heldout import heldout_contexts, heldout_word_metrics

from .conftest import REPO, need_chromium
from .wandb_log import run_log

QUICK = ["train.epochs=3", "train.progress=false", "sample.length=2"]


def cli(*args, env=None, timeout=600):
    e = dict(os.environ, LMJAX_TRACEBACK="0", **(env or {}))
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=timeout)


def compare(*args):
    return subprocess.run([sys.executable, "-m", "experiments.compare", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


# --- aggregation maths ----------------------------------------------------------------------

def test_mean_std_is_the_sample_std():
    st = mean_std([1.0, 2.0, 4.0])
    assert st.n == 3 and st.mean == pytest.approx(7 / 3)
    assert st.std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    one = mean_std([5.0])
    assert one.mean == 5.0 and math.isnan(one.std) and one.n == 1
    assert mean_std([]).n == 0


def _fake_run(d: Path, framing: str, hidden: int, seed: int, acc: float, status="completed"):
    d.mkdir(parents=True)
    cfg = {"seed": seed, "name": f"r{seed}", "framing": {"name": framing, "seq_len": 0},
           "model": {"hidden_size": hidden}, "logger": {"name": "none"}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    s = {"status": status, "framing": framing, "val_accuracy": acc, "params": hidden * 10}
    (d / "summary.json").write_text(json.dumps(s))


def test_grouping_ignores_seed_and_failed_runs(tmp_path):
    _fake_run(tmp_path / "0", "one_word", 16, 0, 0.5)
    _fake_run(tmp_path / "1", "one_word", 16, 1, 0.7)
    _fake_run(tmp_path / "2", "one_word", 32, 0, 0.9)
    _fake_run(tmp_path / "3", "two_word", 16, 0, 0.1)
    _fake_run(tmp_path / "4", "two_word", 16, 1, 0.0, status="failed")
    _fake_run(tmp_path / "5.process1", "two_word", 16, 1, 0.3)  # a process copy: not a run
    runs = find_runs([tmp_path])
    assert len(runs) == 5
    groups = {(g.params["framing"], g.params["model.hidden_size"]): g for g in group_runs(runs)}
    assert set(groups) == {("one_word", 16), ("one_word", 32), ("two_word", 16)}
    g = groups[("one_word", 16)]
    assert g.n == 2 and g.stats["val_accuracy"].mean == pytest.approx(0.6)
    assert g.stats["val_accuracy"].std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert groups[("two_word", 16)].n == 1  # the failed seed is not averaged in


def test_runs_are_found_under_any_path_but_not_inside_wandb_dirs(tmp_path):
    base = tmp_path / "wandb" / "sweep"  # a user's folder may be called wandb
    _fake_run(base / "0", "one_word", 16, 0, 0.5)
    _fake_run(base / "0" / "wandb" / "x", "one_word", 16, 1, 0.7)  # W&B's files: not a run
    runs = find_runs([base])
    assert [r.path for r in runs] == [base / "0"]


# --- held-out word metrics ------------------------------------------------------------------

def test_heldout_contexts_follow_each_framing():
    lines = [np.array([2, 3, 4]), np.array([5, 6])]
    cases = {
        "one_word": (FramingConfig(name="one_word"), 1, [[2], [3], [5]]),
        "two_word": (FramingConfig(name="n_words", n_words=2), 2, [[0, 2], [2, 3], [4, 5]]),
        "two_within": (FramingConfig(name="n_words", n_words=2, cross_lines=False), 2,
                       [[0, 2], [2, 3], [0, 5]]),
        "line_by_line": (FramingConfig(name="line_by_line"), 3,
                         [[0, 0, 2], [0, 2, 3], [0, 0, 5]]),
    }
    for name, (fc, width, want) in cases.items():
        ctx, tgt = heldout_contexts(Config(framing=fc), lines, width)
        assert ctx.tolist() == want, name
        assert tgt.tolist() == [3, 4, 6], name


def test_heldout_metrics_score_the_same_words():
    text = "a b c\na b d\n"
    vocab = Vocab.build(tokenize_lines(text, "word"), "word")
    uniform = lambda x: np.full((len(x), len(vocab)), -math.log(len(vocab)))  # noqa: E731
    m = heldout_word_metrics(uniform, Config(framing=FramingConfig(name="one_word")), vocab,
                             text, 1)
    assert m["heldout_word_count"] == 4 and m["heldout_word_oov_rate"] == 0.0
    assert m["heldout_word_perplexity"] == pytest.approx(len(vocab))
    assert m["heldout_word_accuracy"] == 1.0  # all tied: ties count as right
    char = Config(framing=FramingConfig(name="char", level="char"), data=DataConfig())
    assert heldout_word_metrics(uniform, char, vocab, text, 1) == {}


# --- a real sweep, compared ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 framings x 2 hidden sizes x 2 seeds on the rhyme, 3 epochs each."""
    d = tmp_path_factory.mktemp("sweep") / "framings"
    r = cli("-m", "framing=one_word,two_word", "model.hidden_size=8,16", "seed=0,1",
            "logger=none", *QUICK, f"hydra.sweep.dir={d}")
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def test_sweep_jobs_each_in_their_own_dir(sweep):
    rows = [json.loads(x) for x in (sweep / "sweep_summary.jsonl").read_text().splitlines()]
    assert sorted(r["job"] for r in rows) == list(range(8))
    assert all(r["status"] == "completed" for r in rows)
    names = {r["name"] for r in rows}
    assert "framing=one_word,model.hidden_size=8,seed=0" in names and len(names) == 8
    for r in rows:
        s = json.loads((sweep / r["run_dir"] / "summary.json").read_text())
        assert s["val_accuracy"] == r["val_accuracy"]
        assert "heldout_word_accuracy" in s and "heldout_word_perplexity" in s


def test_compare_report_has_four_groups_of_two(sweep, tmp_path):
    r = compare(sweep, "--out", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "cmp" / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {row["n"] for row in rows} == {"2"}
    assert {(row["framing"], row["hidden_size"]) for row in rows} == {
        ("one_word", "8"), ("one_word", "16"), ("two_word", "8"), ("two_word", "16")}
    # the table's mean is the mean of the two seeds' summaries
    runs = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    pick = [s["val_accuracy"] for s in runs if s["framing"] == "two_word"
            and s["hidden_size"] == 16]
    row = next(r for r in rows if r["framing"] == "two_word" and r["hidden_size"] == "16")
    mean = float(row["val acc"].split("±")[0])
    assert mean == pytest.approx(sum(pick) / 2, abs=1e-4)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.count("\n| one_word") == 2 and md.count("\n| two_word") == 2
    pngs = sorted(p.name for p in (tmp_path / "cmp").glob("*.png"))
    assert "val_accuracy_vs_hidden_size.png" in pngs and "curves_val_loss.png" in pngs
    # every metric against hidden size and against the input width (1 for one_word, 2 for
    # two_word), the held-out word metrics included
    for metric in ("val_accuracy", "val_loss", "val_perplexity", "heldout_word_accuracy",
                   "heldout_word_perplexity", "train_steady_seconds", "tokens_per_second"):
        for x in ("hidden_size", "seq_len"):
            assert f"{metric}_vs_{x}.png" in pngs, (metric, x)
    # flat lines are not drawn: the oracle follows the framing only, params the hidden size only
    assert "oracle_val_accuracy_vs_seq_len.png" in pngs and "params_vs_hidden_size.png" in pngs
    assert "oracle_val_accuracy_vs_hidden_size.png" not in pngs
    assert "params_vs_seq_len.png" not in pngs
    cols = {"held-out word acc", "held-out word ppl", "params", "wall s", "start-up s",
            "train s", "tokens/s"}
    assert cols <= set(rows[0])
    for p in (tmp_path / "cmp").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"




def test_report_renders_in_headless_chromium(sweep, tmp_path):
    chromium = need_chromium()
    out = tmp_path / "cmp"
    assert compare(sweep, "--out", out).returncode == 0
    html = (out / "report.html").resolve()
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
                       capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert 'id="compare"' in dom, r.stderr[-2000:]
    body = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr>") == 4
    imgs = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom)
    assert "val_accuracy_vs_hidden_size" in imgs and len(imgs) >= 4
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=1200,1600", f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000  # a page with pictures, not blank


def test_a_failing_job_is_recorded_and_the_others_run(tmp_path):
    d = tmp_path / "sweep"
    r = cli("-m", "framing=one_word", "model.hidden_size=8,0,16", "logger=none", *QUICK,
            f"hydra.sweep.dir={d}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "job 1 (model.hidden_size=0) failed: ConfigError: model.hidden_size must be > 0" \
        in r.stderr
    rows = {x["job"]: x for x in map(json.loads,
                                     (d / "sweep_summary.jsonl").read_text().splitlines())}
    assert [rows[i]["status"] for i in range(3)] == ["completed", "failed", "completed"]
    assert "hidden_size must be > 0" in rows[1]["error"]
    assert "hidden_size must be > 0" in (d / "1" / "error.txt").read_text()
    # the sweep dir, once, last (not each job's run dir); each job's .hydra/ written
    assert r.stdout.splitlines()[-1] == (f"sweep dir: {d} (1 of 3 jobs failed; see "
                                         f"sweep_summary.jsonl)") and "run dir:" not in r.stdout
    assert (d / "2" / ".hydra" / "overrides.yaml").is_file()
    assert json.loads((d / "1" / "summary.json").read_text())["status"] == "failed"
    res = write_report(find_runs([d]), tmp_path / "cmp", [str(d)])
    assert len(res["rows"]) == 2 and len(res["failed"]) == 1
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert "hidden_size must be &gt; 0" in page
    # the failed job is listed with the override that made it fail, in the page and compare.md
    row = next(x for x in res["markdown"].splitlines() if x.startswith("| 1 | failed"))
    assert "model.hidden_size=0" in row and "hidden_size must be > 0" in row
    assert "<td>model.hidden_size=0</td>" in page
    assert res["header"][:2] == ["framing", "hidden_size"]


def test_wandb_one_offline_run_per_job(tmp_path):
    """An lr sweep whose second job diverges: each job is its own W&B run, and the failed one
    is finished too (exit code 1), so nothing merges."""
    d = tmp_path / "wsweep"
    r = cli("-m", "framing=two_word", "optim=sgd", "optim.clip_norm=0", "optim.lr=0.5,1e38",
            "logger=wandb", *QUICK, f"hydra.sweep.dir={d}", env={"WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (d / "sweep_summary.jsonl").read_text().splitlines()]
    assert [x["status"] for x in rows] == ["completed", "failed"]
    assert "TrainingDiverged" in rows[1]["error"]
    seen = {}
    for job, lr, code in (("0", 0.5, 0), ("1", 1e38, 1)):
        runs = run_log(d / job)["runs"]
        assert len(runs) == 1, job  # one W&B run per job, never merged
        w = runs[0]
        assert w["group"] == "wsweep" and w["name"] == f"optim.lr={lr:g}"
        assert w["config"]["optim"]["lr"] == lr and w["config"]["framing"]["n_words"] == 2
        assert w["config"]["model"]["hidden_size"] == 50 and w["config"]["seed"] == 0
        assert w["config"]["name"] == w["name"]
        metrics = [json.loads(x) for x in (d / job / "metrics.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in w["history"]] == [m["epoch"] for m in metrics]
        finite = [v if math.isfinite(v) else None for v in (h["val_loss"] for h in w["history"])]
        assert finite == [m["val_loss"] for m in metrics]  # metrics.jsonl writes inf as null
        assert w["exit_code"] == code  # finish() was called on both paths
        seen[w["id"]] = job
    assert [h["epoch"] for h in run_log(d / "0")["runs"][0]["history"]] == [1, 2, 3]
    summary = json.loads((d / "0" / "summary.json").read_text())
    w0 = run_log(d / "0")["runs"][0]["summary"]
    for k in ("val_accuracy", "heldout_word_accuracy", "heldout_word_perplexity", "params"):
        assert w0[k] == summary[k], k
    assert json.loads((d / "1" / "summary.json").read_text())["status"] == "failed"
    assert len(seen) == 2


def test_wandb_online_without_network_falls_back_to_offline(tmp_path):
    r = cli("framing=one_word", "logger=wandb", "logger.mode=online", *QUICK,
            f"hydra.run.dir={tmp_path / 'run'}",
            env={"WANDB_MODE": "", "WANDB_API_KEY": "x" * 40,
                 "WANDB_BASE_URL": "http://127.0.0.1:9", "LMJAX_WANDB_INIT_TIMEOUT": "5"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "logging offline instead" in r.stderr
    runs = run_log(tmp_path / "run")["runs"]
    assert len(runs) == 1 and [h["epoch"] for h in runs[0]["history"]] == [1, 2, 3]


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    d = tmp_path / "jl"
    r = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "framing=one_word,two_word",
            "logger=none", *QUICK, f"hydra.sweep.dir={d}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in r.stdout + r.stderr
    for job in ("0", "1"):
        assert json.loads((d / job / "summary.json").read_text())["status"] == "completed"


def test_slurm_launcher_composes():
    r = subprocess.run([sys.executable, "-m", "experiments.run", "hydra/launcher=slurm",
                        "hydra.launcher.partition=gpu", "hydra.launcher.nodes=2",
                        "--cfg", "hydra", "-p", "hydra.launcher"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    launcher = yaml.safe_load(r.stdout.split("\n", 1)[1])
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["partition"] == "gpu" and launcher["nodes"] == 2
    assert launcher["timeout_min"] == 120


def test_named_sweep_preset_sweeps():
    r = subprocess.run([sys.executable, "-m", "experiments.run", "experiment=sweep_framings",
                        "--cfg", "hydra", "-p", "hydra.sweeper.params"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    params = yaml.safe_load(r.stdout.split("\n", 1)[1])
    assert params["framing"].split(",") == ["one_word", "line_by_line", "two_word", "three_word"]
    assert params["model.hidden_size"] == "16,50,128" and params["seed"] == "0,1,2"
    # Hydra's basic sweeper expands these into 36 jobs, each with one value per key
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    jobs = [j for batch in BasicSweeper.split_arguments(parsed, None) for j in batch]
    assert len(jobs) == 36 and len({tuple(j) for j in jobs}) == 36
    assert ["framing=three_word", "model.hidden_size=128", "seed=2"] in jobs


def test_compare_bad_path_one_line(tmp_path):
    r = compare(tmp_path / "nope")
    assert r.returncode == 2 and r.stderr.strip().startswith("lmjax: error:")
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    r = compare(tmp_path / "empty")
    assert r.returncode == 2 and "no runs" in r.stderr
