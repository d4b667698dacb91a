"""End-of-run test metrics (the best-validation checkpoint scored on the whole test text as one
stream) and the carried validation of framing.carry_state (docs/metrics.md)."""

import dataclasses
import json
import math

import numpy as np
import pytest

from lmjax.config import (Config, DataConfig, FramingConfig, LoggerConfig, ModelConfig,
                          OptimConfig, TrainConfig)
from lmjax.train.loop import run

WORDS = "the a cat dog sat ran on under mat hill jack jill went up down water pail fetch".split()


def _lines(rng, n):
    return "".join(" ".join(rng.choice(WORDS, 6)) + "\n" for _ in range(n))


def _word_cfg(base, **train):
    return Config(data=DataConfig(name="files", train=str(base / "train.txt"),
                                  valid=str(base / "valid.txt"), test=str(base / "test.txt"),
                                  tokenizer="whitespace", eos=True, lowercase=False),
                  framing=FramingConfig(name="sequence", seq_len=6, step=0, carry_state=True),
                  model=ModelConfig(embed_size=16, hidden_size=32),
                  logger=LoggerConfig(name="none"), optim=OptimConfig(name="adam", lr=3e-2),
                  train=TrainConfig(epochs=8, batch_size=4, progress=False,
                                    checkpoint_every_s=0, **train))


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    """A word model on three files; it overfits its tiny training text, so its best
    validation epoch is an early one, not the last. "zebra" is only in the test file."""
    base = tmp_path_factory.mktemp("test_metrics")
    rng = np.random.default_rng(0)
    (base / "train.txt").write_text(_lines(rng, 40))
    (base / "valid.txt").write_text(_lines(rng, 40))
    (base / "test.txt").write_text(_lines(rng, 8) + "zebra cat sat\n")
    cfg = _word_cfg(base)
    # a continuous cache: test_cache_* beside test_* (training is the same without it)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, cache_window=50, cache_theta=1.0, cache_lambda=0.3))
    summary = run(cfg, base / "run")
    return base, cfg, summary


def _stream_score(run_dir, text, checkpoint):
    from lmjax.infer.load import load_run
    from lmjax.infer.score import STREAM, heldout_next_token

    return heldout_next_token(load_run(run_dir, checkpoint), text, STREAM)


def _score_cli(run_dir, path, capsys, *extra):
    from experiments import score

    score.main([f"run={run_dir}", f"file={path}", "context=stream", "checkpoint=best", *extra])
    out = capsys.readouterr().out.split()
    return {k: float(out[out.index(k) + 1]) for k in ("tokens", "perplexity", "bits_per_char",
                                                       "log_prob", "cache_perplexity",
                                                       "cache_log_prob") if k in out}


def test_cache_metrics_equal_score_stream_with_the_runs_cache(word_run, capsys):
    base, _, s = word_run
    for k in ("test_cache_loss", "test_cache_perplexity", "test_cache_accuracy"):
        assert s[k] is not None, k
    assert math.exp(s["test_cache_loss"]) == pytest.approx(s["test_cache_perplexity"], rel=1e-9)
    # a 20-word vocabulary repeats within 50 positions: the cache changes every figure
    assert abs(s["test_cache_perplexity"] / s["test_perplexity"] - 1) > 1e-3
    printed = _score_cli(base / "run", base / "test.txt", capsys)  # the run's own cache
    assert printed["perplexity"] == pytest.approx(s["test_perplexity"], rel=1e-3)
    assert printed["cache_perplexity"] == pytest.approx(s["test_cache_perplexity"], rel=1e-3)
    off = _score_cli(base / "run", base / "test.txt", capsys, "cache_window=0")
    assert "cache_perplexity" not in off and off["perplexity"] == printed["perplexity"]
    other = _score_cli(base / "run", base / "test.txt", capsys, "cache_lambda=0.6")
    assert other["cache_perplexity"] != pytest.approx(printed["cache_perplexity"], rel=1e-3)


@pytest.mark.parametrize("args, needle", [
    (["context=0", "cache_window=100"], "cache_window: only with context=stream"),
    (["context=stream", "cache_lambda=1.5"], "cache_lambda must be in [0, 1]"),
    (["context=stream", "cache_window=-3"], "cache_window must be >= 0")])
def test_score_cache_arguments_are_checked(word_run, capsys, args, needle):
    from experiments import score

    base, _, _ = word_run
    with pytest.raises(SystemExit) as e:
        score.main([f"run={base / 'run'}", f"file={base / 'test.txt'}", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_word_test_metrics_equal_score_stream_of_the_best_checkpoint(word_run, capsys):
    base, _, s = word_run
    for k in ("test_loss", "test_perplexity", "test_tokens", "test_oov_rate", "test_step"):
        assert k in s and s[k] is not None, k
    assert "test_bits_per_char" not in s
    # the best validation epoch is scored, not the last one
    assert s["test_step"] == s["best_step"] < s["steps"]
    text = (base / "test.txt").read_text()
    best = _stream_score(base / "run", text, "best")
    assert s["test_tokens"] == best["tokens"] == 8 * 7 + 4 - 1  # every token after the first
    assert s["test_perplexity"] == pytest.approx(best["perplexity"], rel=1e-5)
    assert s["test_loss"] == pytest.approx(-best["log_prob"] / best["tokens"], rel=1e-5)
    assert math.exp(s["test_loss"]) == pytest.approx(s["test_perplexity"], rel=1e-9)
    last = _stream_score(base / "run", text, "latest")
    assert abs(last["perplexity"] / s["test_perplexity"] - 1) > 1e-3  # the last would differ
    printed = _score_cli(base / "run", base / "test.txt", capsys)
    assert printed["tokens"] == s["test_tokens"]
    assert printed["perplexity"] == pytest.approx(s["test_perplexity"], rel=1e-3)  # 4 digits
    assert json.loads((base / "run" / "summary.json").read_text())["test_loss"] == s["test_loss"]


def test_oov_targets_count_as_unk_with_the_rate_reported(word_run):
    _, _, s = word_run
    assert s["test_oov_rate"] == pytest.approx(1 / s["test_tokens"])  # "zebra", once
    assert s["test_perplexity_in_vocab"] != pytest.approx(s["test_perplexity"], rel=1e-4)


def test_report_prints_the_test_metrics(word_run):
    from experiments.run import _report
    from lmjax.fmt import num

    _, _, s = word_run
    out = _report(s)
    assert f"test_perplexity {num(s['test_perplexity'])}" in out
    assert f"test_oov_rate {num(s['test_oov_rate'])}" in out and f"step {s['best_step']}" in out
    cache = f"with the continuous cache: test_cache_perplexity {num(s['test_cache_perplexity'])}"
    assert cache in out
    assert cache not in _report({k: v for k, v in s.items() if not k.startswith("test_cache")})


def test_carried_validation_is_one_stream_per_lane(word_run):
    """val_carried_loss: the validation blocks as 10 lanes of consecutive blocks, the state
    carried through each; it equals the stream score of each lane's tokens, and (more context)
    is below the block-wise val_loss that starts every block from a zero state."""
    from lmjax.infer.load import load_run
    from lmjax.infer.score import stream_logprobs
    from lmjax.train.loop import VAL_LANES
    from lmjax.train.prepare import prepare_data

    base, cfg, s = word_run
    rows = [json.loads(x) for x in (base / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("val_carried_loss" in r and "val_carried_perplexity" in r for r in rows)
    assert all(r["val_carried_loss"] != pytest.approx(r["val_loss"], rel=1e-4) for r in rows)
    best = min(rows, key=lambda r: r["val_loss"])
    assert best["val_carried_loss"] < best["val_loss"]
    valid = prepare_data(cfg).valid
    n = len(valid)
    assert valid.weights.min() == 1  # whole blocks: a lane's tokens are its blocks in a row
    per = -(-n // VAL_LANES)
    loaded = load_run(base / "run", "latest")
    nll, count = 0.0, 0
    for j in range(VAL_LANES):
        blocks = range(j * per, min(n, (j + 1) * per))
        if not blocks:
            continue
        ids = np.concatenate([valid.inputs[b] for b in blocks] + [valid.targets[blocks[-1]][-1:]])
        lp, _ = stream_logprobs(loaded, ids)
        nll, count = nll - float(lp.sum()), count + len(lp)
    assert rows[-1]["val_carried_loss"] == pytest.approx(nll / count, rel=1e-5)
    assert s["val_carried_loss"] == rows[-1]["val_carried_loss"]


def test_position_split_char_test_block_capped(tmp_path, capsys):
    """data.split=position: the test block (the corpus's last data.test_frac) is scored, at
    most train.test_max_tokens tokens of it; equal to score ... context=stream on that text."""
    from lmjax.data.corpus import load_splits

    rng = np.random.default_rng(1)
    (tmp_path / "corpus.txt").write_text(_lines(rng, 60))
    cfg = Config(data=DataConfig(name="file", path=str(tmp_path / "corpus.txt"),
                                 valid_frac=0.1, test_frac=0.2),
                 framing=FramingConfig(name="char", level="char", seq_len=8, step=4),
                 model=ModelConfig(embed_size=0, hidden_size=24),
                 logger=LoggerConfig(name="none"), optim=OptimConfig(name="adam", lr=1e-2),
                 train=TrainConfig(epochs=2, batch_size=32, progress=False,
                                   test_max_tokens=300))
    s = run(cfg, tmp_path / "run")
    test = load_splits(cfg.data).test
    assert len(test) > 301 and s["test_tokens"] == 300 and "test_perplexity" not in s
    (tmp_path / "test.txt").write_text(test[:301])  # char level: a token is a character
    printed = _score_cli(tmp_path / "run", tmp_path / "test.txt", capsys)
    want = _stream_score(tmp_path / "run", test[:301], "best")
    assert printed["tokens"] == want["tokens"] == 300
    assert s["test_bits_per_char"] == pytest.approx(want["bits_per_char"], rel=1e-5)
    assert s["test_oov_rate"] == 0.0 and s["test_step"] == s["best_step"]


def test_no_test_split_no_test_metrics(tmp_path):
    """data.split=none (valid = test = train) has no test split: no test_* keys."""
    cfg = Config(data=DataConfig(split="none"), framing=FramingConfig(name="one_word"),
                 model=ModelConfig(embed_size=4, hidden_size=8), logger=LoggerConfig(name="none"),
                 train=TrainConfig(epochs=1, batch_size=8, progress=False))
    s = run(cfg, tmp_path / "run")
    assert not any(k.startswith("test_") for k in s)
