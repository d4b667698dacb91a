"""Watching a run and reading its outcome: plain progress lines away from a terminal (and in
run.log), the bar's loss and budget-aware ETA, diverged runs, what a NaN stop keeps, and the
library's floors (lmjax/train imports nothing above it)."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmjax.config import DataConfig, OptimConfig, TrainConfig
from lmjax.errors import TrainingDiverged

from ..conftest import REPO, poison_losses_from
from .test_loop import _corpus, quiet
from .test_resume import corpus_text

LINE = re.compile(r"step ([\d,]+)/[\d,]+ .*loss (\S+) +([\d,]+) tokens/s +elapsed (\d+:\d\d:\d\d)")


def test_progress_lines_when_output_is_not_a_terminal(tmp_path):
    """stdout and stderr to a file (as ``> log 2>&1``, nohup, SLURM): a plain progress line at
    least every train.log_every_s seconds of training, with step, loss, tokens/s and elapsed
    time; the same lines in Hydra's run.log."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(corpus_text() * 40)
    run_dir = tmp_path / "run"
    log = tmp_path / "log"
    with open(log, "w") as out:
        p = subprocess.run(
            [sys.executable, "-m", "experiments.run", "data=file", f"data.path={corpus}",
             "framing=char", "framing.seq_len=10", "framing.step=1", "model.hidden_size=64",
             "train.batch_size=16", "train.epochs=1", "train.time_budget_s=12",
             "train.log_every_s=1", "train.chunk_seconds=0.5", "logger=none",
             f"hydra.run.dir={run_dir}"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=240,
            env=dict(os.environ, LMJAX_TRACEBACK="0"))
    text = log.read_text()
    assert p.returncode == 0, text[-2000:]
    lines = [x for x in text.splitlines() if LINE.search(x)]
    assert len(lines) >= 2, text[-2000:]
    stamps = [time.mktime(time.strptime(x[1:20], "%Y-%m-%d %H:%M:%S"))
              + int(x[21:24]) / 1000 for x in lines]  # Hydra's "[2026-01-01 12:00:00,123]"
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 1.8, gaps  # every 1 s (+ the noise of a shared machine)
    steps = [int(LINE.search(x).group(1).replace(",", "")) for x in lines]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert all(float(LINE.search(x).group(2)) > 0 for x in lines)
    assert "loss nan" not in text
    run_log = (run_dir / "run.log").read_text()
    assert [x for x in run_log.splitlines() if LINE.search(x)] == lines
    assert "epoch 1/1 done: train loss" in run_log


def _bar(**kw):
    from rich.console import Console

    from lmjax.train.progress import TrainProgress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    return TrainProgress(console=console, **kw), buf


def test_bar_shows_no_nan_before_a_loss_is_known():
    bar, buf = _bar(total_steps=1000, start=0, epochs=10, steps_per_epoch=100)
    with bar:
        bar._progress.refresh()
    assert "loss -" in buf.getvalue() and "nan" not in buf.getvalue()
    # a resumed run: the restored running loss, no nan
    bar, buf = _bar(total_steps=1000, start=250, epochs=10, steps_per_epoch=100, loss=1.25)
    with bar:
        bar._progress.refresh()
    assert "250/1000" in buf.getvalue() and "loss 1.2500" in buf.getvalue()
    assert "nan" not in buf.getvalue()


def test_bar_eta_and_total_honour_the_time_budget():
    """10 epochs of 10,000 steps at 100 steps per training second would take 1000 s; a 60-s
    budget ends it after about 6,000 steps: the bar's total and ETA say so."""
    bar, buf = _bar(total_steps=100_000, epochs=10, steps_per_epoch=10_000, budget_s=60.0)
    with bar:
        bar.advance(1000, 2.0, 0, train_s=10.0)
        assert bar.planned() == pytest.approx(6000, abs=1)
        assert bar.eta() == pytest.approx(50.0)
        bar._progress.refresh()
        assert bar._progress.tasks[0].total == bar.planned()
    assert "0:00:50" in buf.getvalue() and "1000/6000" in buf.getvalue()
    # without a budget the ETA is the epochs' remaining steps at the measured rate
    bar, _ = _bar(total_steps=100_000, epochs=10, steps_per_epoch=10_000)
    with bar:
        bar.advance(1000, 2.0, 0, train_s=10.0)
        assert bar.planned() == 100_000 and bar.eta() == pytest.approx(990.0)


def test_lines_leave_terminal_handlers_alone_while_the_bar_is_drawn(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="lmjax.train")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, plain = logging.StreamHandler(Tty()), logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(tty)
    root.addHandler(plain)
    try:
        bar, _ = _bar(total_steps=100, epochs=1, steps_per_epoch=100)
        with bar:
            bar.advance(10, 2.0, 0, train_s=1.0)
            bar.line()
        bar.line()  # after the bar: terminals get lines again
    finally:
        root.removeHandler(tty)
        root.removeHandler(plain)
    assert plain.stream.getvalue().count("step ") == 2
    assert tty.stream.getvalue().count("step ") == 1


def test_lines_keep_coming_while_the_loop_is_busy(caplog):
    """Compiling a chunk or evaluating can hold the loop for many seconds: the lines come from
    a ticker, every log_every_s, with the last known numbers."""
    import logging

    caplog.set_level(logging.INFO, logger="lmjax.train")
    bar, _ = _bar(total_steps=100, epochs=1, steps_per_epoch=100, log_every_s=0.2)
    with bar:
        bar.advance(10, 2.0, 0, train_s=1.0)
        time.sleep(0.75)  # no advance meanwhile
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step 10/")]
    assert 3 <= len(lines) <= 5, lines
    assert "loss 2.0000" in lines[-1]


# --- outcomes ----------------------------------------------------------------------------------

def test_a_run_that_explodes_is_recorded_as_diverged(tmp_path):
    """optim.lr=1e6 on the rhyme: the loss stays finite but ends far above ln(V): status
    "diverged" with a reason; lr=1e-3 stays "completed" (no reason)."""
    def cfg(lr):
        return quiet(data=DataConfig(split="none"), optim=OptimConfig(lr=lr),
                     train=TrainConfig(epochs=5, progress=False))

    from lmjax.train.loop import run

    bad = run(cfg(1e6), tmp_path / "bad")
    assert bad["status"] == "diverged", bad
    assert "ln(V)" in bad["reason"] and "optim.lr" in bad["reason"]
    on_disk = json.loads((tmp_path / "bad" / "summary.json").read_text())
    assert on_disk["status"] == "diverged" and on_disk["reason"] == bad["reason"]
    good = run(cfg(1e-3), tmp_path / "good")
    assert good["status"] == "completed" and "reason" not in good


def test_divergence_rule():
    import math

    from lmjax.train.writer import divergence

    v = 100
    assert divergence({"train_loss": 1.49 * math.log(v), "val_loss": 50.0}, v) is None  # overfit
    assert divergence({"train_loss": 1.51 * math.log(v), "val_loss": 7.0}, v)
    assert "4.5e+06" in divergence({"train_loss": 4.5e6}, v)


@pytest.mark.parametrize("bad_step,says", [
    (0, "no checkpoint was written"),
    (6, r"the last good checkpoint \(step 4\) is kept in "),
])
def test_nan_stop_says_which_checkpoint_is_kept(tmp_path, monkeypatch, bad_step, says):
    loop = poison_losses_from(monkeypatch, bad_step)
    cfg = quiet(data=DataConfig(name="file", path=str(_corpus(tmp_path)), split="none"),
                train=TrainConfig(epochs=3, batch_size=8, steps_per_call=2,
                                  checkpoint_every_steps=4, checkpoint_every_s=0,
                                  progress=False))
    with pytest.raises(TrainingDiverged, match=says):
        loop.run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["last_checkpoint_step"] == (None if bad_step == 0 else 4)


# --- house rule ----------------------------------------------------------------------------------

LOWER = ("lmjax/data", "lmjax/model", "lmjax/train")
UPPER = ("lmjax.cli", "lmjax.infer", "lmjax.compare", "lmjax.bench", "lmjax.sweep")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_lower_floors_import_nothing_above_them():
    """lmjax/data, lmjax/model and lmjax/train (every import, at any depth of a function)
    name none of lmjax.cli, .infer, .compare, .bench, .sweep; the entry points pass what they
    need in (the end-of-run samples callback)."""
    bad = []
    files = [p for d in LOWER for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 20
    for p in files:
        for name in _imports(p):
            if any(name == u or name.startswith(u + ".") for u in UPPER) or name in (
                    "lmjax.cli", "lmjax.infer"):
                bad.append(f"{p.relative_to(REPO)}: {name}")
    assert not bad, bad


def test_stop_signals_still_importable_from_cli():
    from lmjax.cli import StopSignals as A
    from lmjax.train.signals import StopSignals as B

    assert A is B


def test_training_library_needs_no_inference(tmp_path):
    """Without a samples callback a run writes no samples (and imports no lmjax.infer)."""
    code = ("import sys; from lmjax.train.loop import run; from tests.train.test_loop import "
            "quiet; from lmjax.config import DataConfig, TrainConfig; "
            f"s = run(quiet(data=DataConfig(split='none'), train=TrainConfig(epochs=2, "
            f"progress=False)), {str(tmp_path / 'run')!r}); "
            "assert s['samples'] == [], s['samples']; "
            "assert not [m for m in sys.modules if m.startswith('lmjax.infer')], 'infer'")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "run" / "samples.txt").read_text() == "\n"
