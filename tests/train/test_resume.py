"""Runs that survive: SIGKILL at many moments, SIGTERM / Ctrl-C, NaN, W&B resume, tmp dirs.

Every run here is a subprocess (``python -m experiments.run ...``) on a tiny char corpus; the
process kills or signals itself at a named point (``LMJAX_TEST_KILL_AT`` /
``LMJAX_TEST_SIGNAL_AT``, see lmjax/train/faults.py), is resumed, and must end with metrics,
samples and parameters identical bit for bit to an uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ..conftest import REPO

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex bad jam".split()


def corpus_text() -> str:
    rng = np.random.default_rng(0)
    return "".join(" ".join(rng.choice(WORDS, 7)) + "\n" for _ in range(40))


# ~1.7k chars -> ~520 char windows, batch 32: 16 steps per epoch, chunks of 4 steps,
# a checkpoint every 8 steps (mid-epoch) and at every epoch end; dropout exercises the RNG.
ARGS = ["framing=char", "framing.seq_len=10", "framing.step=2", "model.embed_size=8",
        "model.hidden_size=16", "model.dropout=0.1", "train.batch_size=32", "train.epochs=3",
        "train.steps_per_call=4", "train.checkpoint_every_steps=8", "train.checkpoint_every_s=0",
        "train.checkpoint_every=1", "train.progress=false", "data.valid_frac=0.2",
        "sample.prompts=[the]", "sample.length=5", "seed=3"]
TIMING = {"train_seconds", "wall_seconds", "tokens_per_second", "first_chunk_seconds",
          "first_chunk_steps", "corpus"}  # corpus: its path


def cli(run_dir: Path, *extra: str, env: dict | None = None, logger: str = "logger=none",
        timeout: int = 180) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    for k in ("LMJAX_TEST_KILL_AT", "LMJAX_TEST_SIGNAL_AT", "LMJAX_TRACEBACK"):
        e.pop(k, None)
    e.update(env or {})
    corpus = run_dir.parent / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(corpus_text())
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", "data=file", f"data.path={corpus}", *ARGS,
         logger, f"hydra.run.dir={run_dir}", *extra],
        cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout)


def outcome(run_dir: Path) -> dict:
    """What must be identical: metrics rows, summary and samples (timings dropped), params."""
    from lmjax.infer.load import load_run

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    loaded = load_run(run_dir)
    return {"rows": [{k: v for k, v in r.items() if k not in TIMING} for r in rows],
            "summary": {k: v for k, v in summary.items() if k not in TIMING},
            "samples": (run_dir / "samples.txt").read_text(),
            "params": [np.asarray(x) for x in jax.tree.leaves(loaded.state)]}


def assert_same(a: dict, b: dict) -> None:
    assert [r["epoch"] for r in a["rows"]] == [1, 2, 3]
    assert a["rows"] == b["rows"]  # exact float equality, row by row
    assert a["summary"] == b["summary"]
    assert a["samples"] == b["samples"]
    assert len(a["params"]) == len(b["params"])
    for x, y in zip(a["params"], b["params"]):
        assert x.dtype == y.dtype and np.array_equal(x, y)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run (the suite's cache dirs are set by conftest's autouse fixture,
    which module fixtures do not see, so this one sets its own)."""
    base = tmp_path_factory.mktemp("ref")
    cache = tmp_path_factory.getbasetemp() / "cache"
    r = cli(base / "run", env={"XDG_CACHE_HOME": str(cache), "WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr
    return outcome(base / "run")


def kill_chain(run_dir: Path, points: list[str], before_last=None) -> list[str]:
    """Start, SIGKILL at points[0]; resume, SIGKILL at points[1]; ...; resume to the end."""
    seen = []
    for i, point in enumerate(points):
        r = cli(run_dir, *(["resume=true"] if i else []), env={"LMJAX_TEST_KILL_AT": point})
        assert r.returncode == -9, f"{point}: not killed (rc {r.returncode}): {r.stderr[-2000:]}"
        seen.append(point)
        leftovers = list((run_dir / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
        if point.startswith("ckpt_write"):
            assert leftovers, "a kill inside a checkpoint write leaves its tmp dir behind"
        if point.startswith("logged"):  # the epoch's line is written, its checkpoint is not
            rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
            assert rows[-1]["epoch"] == len(rows)
    if before_last:
        before_last(run_dir)
    r = cli(run_dir, "resume=true")
    assert r.returncode == 0, r.stderr
    assert not list((run_dir / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
    return seen


def _fake_tmp_checkpoint(run_dir: Path) -> None:
    """A half-written checkpoint folder with a higher step than any real one: never restored."""
    from lmjax.train.checkpoint import Checkpointer

    fake = run_dir / "checkpoints" / "9999.orbax-checkpoint-tmp"
    (fake / "state").mkdir(parents=True)
    (fake / "state" / "garbage").write_bytes(b"\x00not a checkpoint")
    ck = Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        assert 9999 not in ck.all_steps() and ck.latest_step() < 9999
    finally:
        ck.close()


def test_kill_resume_short(tmp_path, reference):
    """Three SIGKILLs (inside a checkpoint write, mid-epoch after a chunk, after an epoch's
    metrics line but before its checkpoint), each resumed, and a stray tmp folder with a higher
    step: identical to the uninterrupted run, no epoch twice in metrics.jsonl. Retention keeps
    the latest N checkpoints plus the best by val_loss."""
    from lmjax.train.checkpoint import Checkpointer

    run_dir = tmp_path / "run"
    seen = kill_chain(run_dir, ["ckpt_write:2", "chunk:5", "logged:1"], _fake_tmp_checkpoint)
    assert len(seen) == 3
    assert_same(outcome(run_dir), reference)
    ck = Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        steps, meta = ck.all_steps(), ck.restore_meta()
    finally:
        ck.close()
    vals = [r["val_loss"] for r in reference["rows"]]
    best = [16, 32, 48][int(np.argmin(vals))]
    assert meta["best_step"] == best and meta["best_val_loss"] == min(vals)
    assert {32, 40, 48, best} >= set(steps) >= {32, 40, 48}  # keep_checkpoints=3 (default)


@pytest.mark.slow
def test_kill_resume_fourteen_points(tmp_path, reference):
    """Checkpoints fall at steps 8, 16 (end of epoch 1), 24, 32, 40, 48; each kill's comment
    says which one the next process resumes from."""
    points = ["start:1",        # none yet: starts over
              "chunk:1",        # none
              "ckpt_begin:1",   # none (about to write step 8)
              "ckpt_write:1",   # none (step 8 half written: a tmp dir)
              "ckpt_done:1",    # 8
              "chunk:2",        # 8 (killed at the end of epoch 1, before its evaluation)
              "logged:1",       # 8 (epoch 1 logged again, then killed before its checkpoint)
              "ckpt_write:1",   # 8 (step 16 half written)
              "ckpt_done:2",    # 24
              "chunk:3",        # 32 (killed in epoch 3)
              "ckpt_begin:2",   # 40 (about to write 48)
              "logged:1",       # 40 (epoch 3 logged, not checkpointed)
              "ckpt_done:1",    # 48 (the final checkpoint; no samples, no summary yet)
              "summary:1"]      # 48 (samples written, summary.json not)
    seen = kill_chain(tmp_path / "run", points)
    assert len(seen) == 14
    assert_same(outcome(tmp_path / "run"), reference)


@pytest.mark.parametrize("point,sig,code,step", [("chunk:3", "TERM", 143, 12),
                                                 ("logged:2", "INT", 130, 32)])
def test_signal_saves_and_resumes(tmp_path, reference, point, sig, code, step):
    """SIGTERM mid-epoch (with W&B, offline) and Ctrl-C at an epoch end: a checkpoint, W&B
    closed, summary.json "interrupted", a clear last line; the resumed run continues the same
    W&B run and ends identical to the uninterrupted one."""
    run_dir = tmp_path / "run"
    logger = "logger=wandb" if sig == "TERM" else "logger=none"
    env = {"LMJAX_TEST_SIGNAL_AT": f"{point}:{sig}", "WANDB_MODE": "offline"}
    r = cli(run_dir, env=env, logger=logger)
    assert r.returncode == code, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines[-1].startswith(f"lmjax: error: stopped by SIG{sig}"), r.stderr
    assert "resume=true" in lines[-1] and "Traceback" not in r.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["last_checkpoint_step"] == step
    if sig == "TERM":
        first = list((run_dir / "wandb").glob("offline-run-*"))
        assert len(first) == 1 and list(first[0].glob("run-*.wandb"))
        run_id = first[0].name.rsplit("-", 1)[-1]
    r = cli(run_dir, "resume=true", env={"WANDB_MODE": "offline"}, logger=logger)
    assert r.returncode == 0, r.stderr
    where = {12: "resumed from step 12, epoch 1 (12 of its 16 steps done)",
             32: "resumed from step 32, epoch 3"}[step]
    assert where in r.stdout and where in (run_dir / "run.log").read_text()
    assert_same(outcome(run_dir), reference)
    if sig == "TERM":
        from lmjax.train.checkpoint import Checkpointer

        ids = {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}
        assert ids == {run_id}  # the resumed process logged to the same W&B run
        ck = Checkpointer(run_dir / "checkpoints", read_only=True)
        try:
            assert ck.restore_meta()["wandb_id"] == run_id
        finally:
            ck.close()


def test_run_written_before_new_config_keys_resumes(tmp_path):
    """A run dir whose config.yaml predates data.shard and framing.carry_state (keys at their
    defaults) still resumes: those keys count as unchanged while they hold their defaults."""
    import re

    run_dir = tmp_path / "run"
    r = cli(run_dir, "train.epochs=1")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg_file = run_dir / "config.yaml"
    text = cfg_file.read_text()
    old = re.sub(r"\n  (shard|carry_state): [^\n]*", "", text)
    assert old != text and "shard:" not in old and "carry_state" not in old
    cfg_file.write_text(old)
    r = cli(run_dir, "train.epochs=2", "resume=true")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in rows] == [1, 2]
