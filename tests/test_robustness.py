"""Bad input and damaged run dirs: one clear line, a non-zero exit, nothing overwritten.
NaN stops a run and keeps the last good checkpoint. Nothing is ever loaded with pickle or eval."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from lmjax.config import Config, from_dictconfig, register_configs
from lmjax.errors import CheckpointError, ConfigError, TrainingDiverged
from lmjax.track import truncate_metrics

from .conftest import REPO, poison_losses_from

register_configs()

TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog met on the mat\n" * 6
# A small word run: 2 epochs, a checkpoint at each epoch end.
ARGS = ["name=t", "framing=two_word", "model.embed_size=8", "model.hidden_size=16",
        "train.epochs=2", "train.batch_size=16", "train.checkpoint_every=1",
        "train.progress=false", "sample.length=2", "sample.prompts=[the]", "logger=none"]


def _env() -> dict:
    env = dict(os.environ, WANDB_MODE="disabled")
    for k in ("LMJAX_TRACEBACK", "LMJAX_TEST_KILL_AT", "LMJAX_TEST_SIGNAL_AT"):
        env.pop(k, None)
    return env


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)


def one_line_error(r: subprocess.CompletedProcess, message: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("lmjax: error: "), r.stderr
    assert message in lines[0], lines[0]
    return lines[0]


def compose_cfg(*overrides: str) -> Config:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return from_dictconfig(compose("config", overrides=[*ARGS, *overrides]))


def snapshot(run_dir: Path) -> dict[str, str]:
    """sha256 of every file lmjax wrote (Hydra's own .hydra/ and run.log excluded)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if p.is_file() and not rel.startswith(".hydra") and rel != "run.log":
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus, run dir) of a completed 2-epoch run made by the CLI."""
    base = tmp_path_factory.mktemp("done")
    corpus = base / "corpus.txt"
    corpus.write_text(TEXT)
    env = _env()
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.getbasetemp() / "cache")
    r = subprocess.run([sys.executable, "-m", "experiments.run", *ARGS, "data=file",
                        f"data.path={corpus}", f"hydra.run.dir={base / 'run'}"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return corpus, base / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path) -> tuple[Path, Path]:
    corpus, run_dir = finished_run
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst, symlinks=True)
    return corpus, dst


# --- bad input on the command line --------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["data=file", "data.path={binary}"], "looks binary"),
    (["data=file", "data.path={latin1}"], "not valid UTF-8"),
    (["data=file", "data.path={folder}"], "not a file"),
    (["optim=nosuch"], "unknown optimizer 'nosuch'"),
    (["model.hidden_size=0"], "model.hidden_size must be > 0"),
    (["model.num_layers=-1"], "model.num_layers must be > 0"),
    (["train.batch_size=-4"], "train.batch_size must be > 0"),
    (["train.epochs=0"], "train.epochs must be > 0"),
    (["train.keep_checkpoints=0"], "train.keep_checkpoints must be > 0"),
    (["train.checkpoint_every_steps=-1"], "train.checkpoint_every_steps must be >= 0"),
    (["resume=true", "overwrite=true"], "contradict"),
    (["resume=true"], "holds no lmjax run"),
])
def test_bad_input_one_line(tmp_path, args, message):
    (tmp_path / "binary.bin").write_bytes(b"\x7fELF\x00\x01\x02" * 50)
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 20)
    (tmp_path / "folder").mkdir()
    args = [a.format(binary=tmp_path / "binary.bin", latin1=tmp_path / "latin1.txt",
                     folder=tmp_path / "folder") for a in args]
    one_line_error(cli(*ARGS, *args, f"hydra.run.dir={tmp_path / 'run'}"), message)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_different_config_refused_nothing_overwritten(run_copy):
    corpus, run_dir = run_copy
    before = snapshot(run_dir)
    line = one_line_error(cli(*ARGS, "data=file", f"data.path={corpus}", "model.hidden_size=20",
                              f"hydra.run.dir={run_dir}"), "already holds a run with a different")
    assert "model.hidden_size: 16 -> 20" in line and "overwrite=true" in line
    one_line_error(cli(*ARGS, "data=file", f"data.path={run_dir / 'nosuch.txt'}",
                       f"hydra.run.dir={run_dir}"), "corpus file not found")
    assert snapshot(run_dir) == before


def _all_files(run_dir: Path) -> dict[str, str]:
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_refused_run_keeps_hydra_files(run_copy):
    """Hydra writes .hydra/ before lmjax sees the config; a refused run must not replace the
    run's own (nor leave a run.log it made)."""
    corpus, run_dir = run_copy
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    (run_dir / "run.log").unlink(missing_ok=True)
    before = _all_files(run_dir)
    one_line_error(cli(*ARGS, "data=file", f"data.path={corpus}", "model.hidden_size=20",
                       f"hydra.run.dir={run_dir}"), "already holds a run with a different")
    one_line_error(cli(*ARGS, "data=file", f"data.path={corpus}", "model.hidden_size=0",
                       f"hydra.run.dir={run_dir}"), "model.hidden_size must be > 0")
    assert _all_files(run_dir) == before


def test_corrupted_checkpoint_one_line(run_copy):
    corpus, run_dir = run_copy
    ckdir = run_dir / "checkpoints"
    latest = max(int(p.name) for p in ckdir.iterdir() if p.name.isdigit())
    for f in (ckdir / str(latest) / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 3)
    before = snapshot(run_dir)
    one_line_error(cli(*ARGS, "data=file", f"data.path={corpus}", "resume=true",
                       f"hydra.run.dir={run_dir}"), f"checkpoint {ckdir / str(latest)} cannot be")
    assert snapshot(run_dir) == before


# --- damaged or mismatched run dirs (in process: same errors, no start-up cost) ------------

def test_resume_with_another_config_refused(run_copy):
    from lmjax.train.loop import run

    corpus, run_dir = run_copy
    before = snapshot(run_dir)
    cfg = compose_cfg("data=file", f"data.path={corpus}", "resume=true", "optim.lr=0.5")
    with pytest.raises(CheckpointError, match=r"cannot resume .*optim.lr: 0.001 -> 0.5"):
        run(cfg, run_dir)
    assert snapshot(run_dir) == before


def test_edited_vocabulary_refused(run_copy):
    from lmjax.infer.load import load_run
    from lmjax.train.loop import run

    corpus, run_dir = run_copy
    vocab = json.loads((run_dir / "vocab.json").read_text())
    vocab["tokens"][2], vocab["tokens"][3] = vocab["tokens"][3], vocab["tokens"][2]
    (run_dir / "vocab.json").write_text(json.dumps(vocab))
    before = snapshot(run_dir)
    cfg = compose_cfg("data=file", f"data.path={corpus}", "resume=true")
    with pytest.raises(CheckpointError, match="vocab.json does not match"):
        run(cfg, run_dir)
    with pytest.raises(CheckpointError, match="vocab.json does not match"):
        load_run(run_dir)
    assert snapshot(run_dir) == before


def test_changed_corpus_refused_on_resume(run_copy, tmp_path):
    from lmjax.train.loop import run

    _, run_dir = run_copy
    other = tmp_path / "other.txt"
    other.write_text(TEXT.replace("cat", "cow"))
    cfg = compose_cfg("data=file", f"data.path={other}", "resume=true")
    with pytest.raises(CheckpointError, match="the corpus text differs"):
        run(cfg, run_dir)


def test_same_config_resumes_and_more_epochs_extend(run_copy):
    """An existing run dir with the same config continues (no resume=true needed); raising
    train.epochs trains on from the checkpoint; metrics.jsonl gets each epoch once."""
    from lmjax.train.loop import run

    corpus, run_dir = run_copy
    old = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    s = run(compose_cfg("data=file", f"data.path={corpus}", "train.epochs=3"), run_dir)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and s["epochs"] == 3
    assert rows[:2] == old  # the first two epochs were not retrained
    assert s["steps"] == 3 * old[-1]["step"] // 2


def test_overwrite_replaces_the_run(run_copy):
    from lmjax.train.loop import run

    corpus, run_dir = run_copy
    s = run(compose_cfg("data=file", f"data.path={corpus}", "model.hidden_size=12",
                        "overwrite=true", "train.epochs=1"), run_dir)
    assert s["epochs"] == 1 and "hidden_size: 12" in (run_dir / "config.yaml").read_text()
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in rows] == [1]
    steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir())
    assert steps == [s["steps"]]


# --- NaN -----------------------------------------------------------------------------------

def test_nan_stops_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """The loss turns NaN from step 7 on: TrainingDiverged names epoch and step, summary.json
    says failed, and the latest checkpoint is the last good one (step 6, finite)."""
    from lmjax.infer.load import load_run

    loop = poison_losses_from(monkeypatch, 6)  # step 7 on
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    cfg = compose_cfg("data=file", f"data.path={corpus}", "train.batch_size=8",
                      "train.steps_per_call=2", "train.checkpoint_every_steps=2",
                      "train.checkpoint_every=0", "train.checkpoint_every_s=0")
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 7"):
        loop.run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "step 7" in summary["error"]
    assert summary["last_checkpoint_step"] == 6
    loaded = load_run(tmp_path / "run")
    assert int(loaded.state.step) == 6
    assert all(np.all(np.isfinite(np.asarray(x))) for x in
               __import__("jax").tree.leaves(loaded.params))


# --- pieces --------------------------------------------------------------------------------

def test_resume_fingerprint_ignores_length_and_logging_only():
    base = Config()
    same = dataclasses.replace(base, name="x", train=dataclasses.replace(base.train, epochs=9,
                                                                          progress=False))
    assert same.resume_fingerprint() == base.resume_fingerprint()
    other = dataclasses.replace(base, model=dataclasses.replace(base.model, hidden_size=7))
    assert other.resume_fingerprint() != base.resume_fingerprint()
    assert dataclasses.replace(base, seed=1).resume_fingerprint() != base.resume_fingerprint()
    with pytest.raises(ConfigError, match="contradict"):
        Config(resume=True, overwrite=True)


def test_truncate_metrics_drops_later_epochs_and_torn_lines(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1, "x": 1}\n{"epoch": 2, "x": 2}\n{"epoch": 3, "x": 3}\n{"epo')
    assert truncate_metrics(p, 2) == 2
    assert [json.loads(x)["epoch"] for x in p.read_text().splitlines()] == [1, 2]


FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve",
                     "joblib"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                bad.append(node.module)
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
                else ""
            if isinstance(f, ast.Name) and name in ("eval", "exec", "__import__"):
                bad.append(f"{name}()")
            if isinstance(f, ast.Attribute) and name in ("unsafe_load", "full_load") or (
                    name == "load" and isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name) and f.value.id == "yaml"):
                bad.append(f"yaml.{name}()")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant)
                                                     and kw.value.value is False):
                    bad.append("allow_pickle")
    return [f"{path.relative_to(REPO)}: {b}" for b in bad]


def test_no_pickle_or_eval_in_the_package():
    files = [p for d in ("lmjax", "experiments") for p in (REPO / d).rglob("*.py")]
    assert len(files) > 10
    bad = [v for p in files for v in _violations(p)]
    assert bad == []
    # the scanner itself finds what it looks for
    probe = REPO / "tests" / "_probe_scan.py"
    try:
        probe.write_text("import pickle\nx = eval('1')\nimport numpy as np\n"
                         "np.load('a', allow_pickle=True)\nimport yaml\nyaml.load('a')\n")
        assert len(_violations(probe)) == 4
    finally:
        probe.unlink()
