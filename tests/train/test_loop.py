"""Training end to end on shrunk configs: tutorial numbers, determinism, every framing."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import (Config, DataConfig, FramingConfig, LoggerConfig, ModelConfig,
                          OptimConfig, SampleConfig, TrainConfig)
from lmjax.data import batches
from lmjax.train.loop import build_model, make_steps, prepare_data, run
from lmjax.train.step import init_state

TEXT = ("the cat sat on the mat\nthe dog sat on the log\na cat and a dog met on the mat\n" * 8)


def quiet(**kw) -> Config:
    base = dict(logger=LoggerConfig(name="none"), train=TrainConfig(progress=False, epochs=3),
                sample=SampleConfig(prompts=["the"], length=3))
    base.update(kw)
    return Config(**base)


def brownlee(framing: FramingConfig, seed: int = 0) -> Config:
    return quiet(seed=seed, framing=framing, data=DataConfig(split="none"),
                 model=ModelConfig(embed_size=10, hidden_size=50),
                 optim=OptimConfig(name="adam", lr=1e-3),
                 train=TrainConfig(epochs=500, batch_size=32, progress=False),
                 sample=SampleConfig(prompts=["jack"], length=6))


@pytest.mark.parametrize("framing,acc", [
    (FramingConfig(name="one_word"), 21 / 24),
    (FramingConfig(name="line_by_line"), 20 / 21),
    (FramingConfig(name="n_words", n_words=2), 22 / 23),
])
def test_tutorial_framings_reach_their_oracle(tmp_path, framing, acc):
    s = run(brownlee(framing), tmp_path)
    assert s["oracle_train_accuracy"] == pytest.approx(acc, abs=1e-9)
    assert s["train_accuracy"] == pytest.approx(acc, abs=1e-9)
    assert s["num_sequences"] == {"one_word": 24, "line_by_line": 21, "two_word": 23}[
        framing.label]
    assert s["vocab_size"] == 21 + 2 and s["corpus_types"] == 21


def test_line_by_line_preset_seed_generates_the_tutorial_line(tmp_path):
    s = run(brownlee(FramingConfig(name="line_by_line"), seed=2), tmp_path)
    assert s["samples"] == ["jack and jill went up the hill"]


def test_run_dir_contents(tmp_path):
    s = run(quiet(data=DataConfig(split="none"), framing=FramingConfig(name="one_word")), tmp_path)
    for f in ("config.yaml", "vocab.json", "metrics.jsonl", "samples.txt", "summary.json"):
        assert (tmp_path / f).is_file(), f
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    summary = json.loads((tmp_path / "summary.json").read_text())
    need = {"framing", "level", "corpus_types", "vocab_size", "num_sequences", "params", "epochs",
            "train_loss", "train_accuracy", "oracle_train_accuracy", "val_loss", "val_accuracy",
            "val_perplexity", "wall_seconds", "tokens_per_second", "samples"}
    assert need <= set(summary)
    assert summary == json.loads(json.dumps(s))
    assert any((tmp_path / "checkpoints").iterdir())


def test_same_seed_same_metrics(tmp_path):
    cfg = quiet(data=DataConfig(name="file", path=str(_corpus(tmp_path)), valid_frac=0.2),
                framing=FramingConfig(name="n_words", n_words=2),
                model=ModelConfig(embed_size=8, hidden_size=16, dropout=0.2))
    a, b = run(cfg, tmp_path / "a"), run(cfg, tmp_path / "b")
    keys = [k for k in a if k.startswith(("train_", "val_")) and k != "train_seconds"]
    assert keys and all(a[k] == b[k] for k in keys)
    c = run(Config(**{**cfg.__dict__, "seed": 1}), tmp_path / "c")
    assert c["train_loss"] != a["train_loss"]


def test_loss_falls_on_a_fixed_batch(tmp_path):
    cfg = quiet(data=DataConfig(name="file", path=str(_corpus(tmp_path)), split="none"),
                framing=FramingConfig(name="sequence", level="word", seq_len=6),
                model=ModelConfig(embed_size=8, hidden_size=32), optim=OptimConfig(lr=0.02))
    data = prepare_data(cfg)
    graphdef, params = build_model(cfg, len(data.vocab))
    steps = make_steps(cfg, graphdef)
    state = init_state(params, steps.tx, jax.random.PRNGKey(0))
    dev = batches.to_device(data.train)
    idx = jnp.asarray(np.tile(np.arange(8, dtype=np.int32), (100, 1)))  # the same batch, 100 times
    state, sums, losses = steps.train_chunk(state, dev, idx)
    losses = np.asarray(losses)
    assert losses.shape == (100,) and np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    assert int(state.step) == 100


@pytest.mark.parametrize("framing", [
    FramingConfig(name="one_word", cross_lines=False),
    FramingConfig(name="line_by_line"),
    FramingConfig(name="n_words", n_words=3),
    FramingConfig(name="char", level="char", seq_len=10, step=3),
    FramingConfig(name="sequence", level="char", seq_len=12),
    FramingConfig(name="sequence", level="word", seq_len=5),
])
def test_every_framing_trains_on_a_split_corpus(tmp_path, framing):
    cfg = quiet(data=DataConfig(name="file", path=str(_corpus(tmp_path)), valid_frac=0.2,
                                test_frac=0.1),
                framing=framing, model=ModelConfig(embed_size=8, hidden_size=16, num_layers=2),
                train=TrainConfig(epochs=2, batch_size=16, progress=False))
    s = run(cfg, tmp_path / "run")
    assert s["status"] == "completed" and s["epochs"] == 2
    assert s["level"] == framing.token_level
    assert 0 <= s["val_accuracy"] <= s["oracle_val_accuracy"] + 1e-9
    assert np.isfinite(s["val_loss"]) and s["train_loss"] < np.log(s["vocab_size"]) + 0.5
    metric = "val_bits_per_char" if framing.token_level == "char" else "val_perplexity"
    assert s[metric] > 0


def test_time_budget_stops_early(tmp_path):
    cfg = quiet(data=DataConfig(name="file", path=str(_corpus(tmp_path)), split="none"),
                framing=FramingConfig(name="one_word"),
                train=TrainConfig(epochs=100000, batch_size=4, time_budget_s=2, progress=False))
    s = run(cfg, tmp_path / "run")
    assert 0 < s["epochs"] < 100000 and s["train_seconds"] < 10


def test_time_budget_is_not_crossed_by_the_last_chunk(tmp_path, monkeypatch):
    """Each jitted chunk made to take >= 0.15 s: the run must stop before a chunk would cross
    the 4-s budget (stopping only once the budget is spent would always end past it)."""
    import time

    from lmjax.train import step as step_mod

    real = step_mod.Steps.__init__

    def slow_init(self, *a, **kw):
        real(self, *a, **kw)
        fast = self.train_chunk

        def train_chunk(*args):
            time.sleep(0.15)
            return fast(*args)
        self.train_chunk = train_chunk

    monkeypatch.setattr(step_mod.Steps, "__init__", slow_init)
    cfg = quiet(data=DataConfig(name="file", path=str(_corpus(tmp_path)), split="none"),
                framing=FramingConfig(name="one_word"),
                train=TrainConfig(epochs=100000, batch_size=4, steps_per_call=1,
                                  time_budget_s=4.0, progress=False))
    s = run(cfg, tmp_path / "run")
    assert s["steps"] >= 3 and s["train_seconds"] < 4.0


def _corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT)
    return p
