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
    from lmjax.infer.samples import run_samples

    s = run(brownlee(FramingConfig(name="line_by_line"), seed=2), tmp_path, samples=run_samples)
    assert s["samples"] == ["jack and jill went up the hill"]
    assert (tmp_path / "samples.txt").read_text() == "jack and jill went up the hill\n"


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


def _slow_steps(monkeypatch, matmuls: int = 6) -> list:
    """Every train step does ``matmuls`` more 400 x 400 matmuls on the device (tens of ms on a
    CPU; the state depends on them, so they run in order). Returns the (start, end) times of
    every chunk's dispatch."""
    import time

    import jax

    from lmjax.train import step as step_mod

    real_step, real_init = step_mod.Steps.train_step, step_mod.Steps.__init__
    calls: list = []

    def train_step(self, state, batch, lstm_state=None):
        out = real_step(self, state, batch, lstm_state)
        new = out[0]
        x = jnp.full((400, 400), 1e-3, jnp.float32) * new.step.astype(jnp.float32)
        x = jax.lax.fori_loop(0, matmuls, lambda i, y: jnp.tanh(y @ y), x)
        zero = (x[0, 0] * 0).astype(jnp.int32)
        return (new.replace(step=new.step + zero),) + tuple(out[1:])

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        chunk = self.train_chunk

        def train_chunk(*args):
            t = time.perf_counter()
            out = chunk(*args)
            calls.append((t, time.perf_counter()))  # a new chunk size compiles in between
            return out
        self.train_chunk = train_chunk

    monkeypatch.setattr(step_mod.Steps, "train_step", train_step)
    monkeypatch.setattr(step_mod.Steps, "__init__", init)
    return calls


def _long_corpus(tmp_path):
    p = tmp_path / "long.txt"
    p.write_text(TEXT * 4)  # one_word, batch 4: ~200 steps per epoch
    return p


@pytest.mark.slow
def test_time_budget_holds_for_slow_steps(tmp_path, monkeypatch):
    """Steps of ~50 ms and 168 per epoch (a chunk by step count would run ~8 s): with
    train.chunk_seconds=0.4 the chunks shrink to a few steps and a 30-s budget (compilation
    of two chunk sizes included: up to 9 s each on a busy 2-core machine) is kept."""
    _slow_steps(monkeypatch, 30)
    cfg = quiet(data=DataConfig(name="file", path=str(_long_corpus(tmp_path)), split="none"),
                framing=FramingConfig(name="one_word"),
                train=TrainConfig(epochs=100, batch_size=4, time_budget_s=30.0,
                                  chunk_seconds=0.4, progress=False))
    s = run(cfg, tmp_path / "run")
    assert s["train_seconds"] < 30.0 and s["steps"] > 64


def test_sigterm_is_answered_within_chunk_seconds(tmp_path, monkeypatch):
    """SIGTERM 0.3 s after the 3rd chunk is dispatched: the run saves and stops within about
    train.chunk_seconds (plus the checkpoint's write, and any compilation of a new chunk size
    the signal came during: on a busy 2-core machine that alone can take 10 s), not after a
    chunk of a fixed step count (~5 s here)."""
    import os
    import signal
    import threading
    import time

    from lmjax.errors import Interrupted

    calls = _slow_steps(monkeypatch, 18)
    sent: list = []

    def arm():
        while len(calls) < 3:
            time.sleep(0.01)
        time.sleep(0.3)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGTERM)

    cfg = quiet(data=DataConfig(name="file", path=str(_long_corpus(tmp_path)), split="none"),
                framing=FramingConfig(name="one_word"),
                train=TrainConfig(epochs=3, batch_size=4, chunk_seconds=0.4, progress=False))
    t = threading.Thread(target=arm, daemon=True)
    t.start()
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        run(cfg, tmp_path / "run")
    took = time.perf_counter() - sent[0]
    compiling = sum(max(0.0, b - max(a, sent[0])) for a, b in calls)
    assert took - compiling < 2.0, (took, compiling)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["last_checkpoint_step"]


def test_chunk_sizer_follows_measured_step_time():
    from lmjax.train.chunking import ChunkSizer

    z = ChunkSizer(2.0, steps_per_epoch=10_000, flops_per_step=1.0)
    assert z.size == 64  # a tiny guessed step: the first call is still capped
    z.measured(64, 64 * 0.001)  # 1 ms per step -> 1 s per call = 1000 steps -> 512
    assert z.size == 512 and z.chunk_seconds() == pytest.approx(0.512)
    z.measured(512, 512 * 0.01)  # the machine got 10x slower: shrink at once
    assert z.size == 64
    for _ in range(5):
        z.measured(64, 64 * 0.0105)  # within the band: no new size (no recompilation)
    assert z.size == 64
    z.measured(64, 64 * 0.001)
    z.measured(64, 64 * 0.001)
    assert z.size == 64  # two short calls: could be noise
    for _ in range(10):
        z.measured(64, 64 * 0.001)
    assert z.size > 64  # steps really got faster
    assert ChunkSizer(2.0, 3, 1.0).size == 4  # never more than the epoch (rounded up)
    assert ChunkSizer(2.0, 10_000, 1e12).size == 1  # a huge step: one per call
    fixed = ChunkSizer(2.0, 10_000, 1.0, fixed=7)
    fixed.measured(7, 100.0)
    assert fixed.size == 7  # train.steps_per_call overrides
