"""checkpoint=latest|best|STEP: the inference commands load the checkpoint asked for."""

import json

import jax
import numpy as np
import pytest

from lmjax.config import (Config, DataConfig, FramingConfig, LoggerConfig, ModelConfig,
                          OptimConfig, SampleConfig, TrainConfig)
from lmjax.errors import CheckpointError
from lmjax.infer.load import load_run, parse_checkpoint
from lmjax.train.loop import run
from tests.infer.test_commands import CHAR_TEXT, call


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A char run that overfits a small text: a checkpoint every epoch, the latest 2 kept."""
    base = tmp_path_factory.mktemp("ckpt_choice")
    (base / "corpus.txt").write_text(CHAR_TEXT[:1200])
    cfg = Config(data=DataConfig(name="file", path=str(base / "corpus.txt"), valid_frac=0.2,
                                 test_frac=0.2),
                 framing=FramingConfig(name="char", level="char", seq_len=8, step=1),
                 model=ModelConfig(embed_size=0, hidden_size=32),
                 optim=OptimConfig(name="adam", lr=3e-2),
                 train=TrainConfig(epochs=8, batch_size=16, progress=False, checkpoint_every=1,
                                   keep_checkpoints=2, checkpoint_every_s=0),
                 sample=SampleConfig(prompts=["jack"], length=2), logger=LoggerConfig(name="none"))
    run(cfg, base / "run")
    recs = [json.loads(x) for x in (base / "run" / "metrics.jsonl").read_text().splitlines()]
    return base / "run", recs


def test_best_is_the_lowest_validation_loss_and_latest_the_last_step(trained):
    d, recs = trained
    best = min(recs, key=lambda r: r["val_loss"])
    assert load_run(d, "best").state.step == best["step"]
    assert load_run(d).state.step == load_run(d, "latest").state.step == recs[-1]["step"]
    mid = recs[-2]["step"]  # kept: the latest two
    assert load_run(d, mid).state.step == mid


def test_best_and_latest_hold_different_weights_when_the_run_overfit(trained):
    d, recs = trained
    best = min(recs, key=lambda r: r["val_loss"])
    assert best["step"] != recs[-1]["step"], "the fixture's run must overfit before it ends"
    a, b = load_run(d, "best").params, load_run(d, "latest").params
    diffs = [float(np.abs(np.asarray(x) - np.asarray(y)).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    assert max(diffs) > 0


def test_keyboard_eval_best_writes_its_own_file(trained, capsys, monkeypatch):
    d, recs = trained
    code, out, err = call("keyboard_eval", [f"run={d}", "checkpoint=best", "max_words=20",
                                            "progress=false"], capsys, monkeypatch)
    assert code == 0, err
    got = json.loads((d / "keyboard_eval_best.json").read_text())
    assert got["checkpoint"] == "best"
    assert got["step"] == min(recs, key=lambda r: r["val_loss"])["step"]
    assert not (d / "keyboard_eval.json").exists()  # the latest checkpoint's file untouched


def test_bad_checkpoint_choice_is_one_line(trained, capsys, monkeypatch):
    d, _ = trained
    with pytest.raises(CheckpointError, match="not latest, best or a step number"):
        parse_checkpoint("newest")
    code, _, err = call("score", [f"run={d}", "text=jack", "checkpoint=7777"], capsys,
                        monkeypatch)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "7777" in err
