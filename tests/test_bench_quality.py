"""experiments.bench_quality: the PyTorch word_language_model reference beside lmjax."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmjax.bench import quality

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the cat sat on the mat . a dog ran in the park , and the bird sang . "
         "she said that it was late . he read the book by the fire .").split()


def _corpus(tmp_path: Path, lines: int = 120) -> dict[str, str]:
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(lines))
    src = tmp_path / "all.txt"
    src.write_text(text + "\n")
    return {k: v["path"] for k, v in quality.cut_text(src, tmp_path / "split").items()}


def _overrides(files: dict[str, str]) -> list[str]:
    return ["data=files", f"data.train={files['train']}", f"data.valid={files['valid']}",
            f"data.test={files['test']}", "model.embed_size=16", "model.hidden_size=16",
            "train.progress=false"]


def test_cut_text_at_line_boundaries(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("".join(f"line {i:02d}\n" for i in range(100)))
    got = quality.cut_text(src, tmp_path / "o", (0.8, 0.1, 0.1))
    assert [got[k]["lines"] for k in ("train", "valid", "test")] == [80, 10, 10]
    joined = "".join(Path(got[k]["path"]).read_text() for k in ("train", "valid", "test"))
    assert joined == src.read_text()


def test_reference_layout_equals_lmjax_lanes(tmp_path):
    """On a stream of B * bptt * S + r tokens (1 <= r <= B, so lmjax's random lane offset is
    0), lmjax's carry_state lanes hold exactly the reference's batchify columns: step s of
    lmjax is the reference's chunk s, inputs and targets, except that the reference does not
    predict the last token of each column (its last chunk is one row shorter)."""
    pytest.importorskip("torch", reason="the PyTorch reference needs the bench extra")
    from lmjax.bench.torch_wordlm import layout

    cfg = quality.compose(REPO / "conf", _overrides(_corpus(tmp_path)), 1)
    b, t, steps = cfg.train.batch_size, cfg.framing.seq_len, 3
    ids = np.random.default_rng(1).integers(2, 50, b * t * steps + 5).astype(np.int32)
    ref = layout(ids, b, t)
    mine = quality.lmjax_layout(ids, cfg)
    assert len(ref) == len(mine) == steps
    for s, ((rx, ry), (mx, my)) in enumerate(zip(ref, mine)):
        n = len(rx)
        assert n == (t if s < steps - 1 else t - 1)
        np.testing.assert_array_equal(rx, mx[:n])
        np.testing.assert_array_equal(ry, my[:n])
    # the columns continue: lmjax's lane j is the reference's column j, row after row
    np.testing.assert_array_equal(np.concatenate([x for x, _ in mine])[:, 1],
                                  ids[t * steps:2 * t * steps])


def test_reference_trains_and_anneals(tmp_path):
    pytest.importorskip("torch", reason="the PyTorch reference needs the bench extra")
    from lmjax.bench.torch_wordlm import Recipe, run_reference

    files = _corpus(tmp_path, 200)
    cfg = quality.compose(REPO / "conf", _overrides(files), 3)
    vocab, ids = quality.token_ids(cfg)
    r = Recipe(emsize=16, nhid=16, epochs=3, lr=20.0)
    res = run_reference(ids["train"], ids["valid"], ids["test"], len(vocab), r)
    eps = res["epochs"]
    assert eps[-1]["val_loss"] < eps[0]["val_loss"] < np.log(len(vocab))  # it learns
    assert eps[0]["lr"] == 20.0
    for i in range(1, len(eps)):  # lr / 4 exactly after an epoch that did not improve
        improved = i == 1 or eps[i - 1]["val_loss"] < min(e["val_loss"] for e in eps[:i - 1])
        assert eps[i]["lr"] == (eps[i - 1]["lr"] if improved else eps[i - 1]["lr"] / 4)
    best = min(e["val_loss"] for e in eps)
    assert res["best_val_loss"] == best
    assert res["test_tokens"] == (len(ids["test"]) // 10 - 1) * 10


def test_token_ids_are_the_reference_corpus(tmp_path):
    """The ids both sides train on: every line's whitespace tokens and <eos>, in order."""
    files = _corpus(tmp_path)
    cfg = quality.compose(REPO / "conf", _overrides(files), 1)
    vocab, ids = quality.token_ids(cfg)
    for k in ("train", "valid", "test"):
        words = [w for line in Path(files[k]).read_text().splitlines()
                 for w in line.split() + ["<eos>"]]
        assert vocab.decode(ids[k]) == words
    assert cfg.data.vocab == "all" and cfg.framing.carry_state and cfg.optim.lr == 20.0


def test_command_writes_both_sides(tmp_path):
    """One epoch of each side through the command; lmjax's test perplexity is exactly what
    experiments.score checkpoint=best context=stream prints for the test file."""
    pytest.importorskip("torch", reason="the PyTorch reference needs the bench extra")
    files = _corpus(tmp_path)
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "experiments.bench_quality", *_overrides(files),
           "bench.epochs=1", f"bench.out={out}", "bench.impls=[lmjax,torch,regularized]"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "quality.json").read_text())
    assert len(res["lmjax"]["epochs"]) == len(res["torch"]["epochs"]) == 1
    for side in ("lmjax", "torch"):
        assert 1 < res[side]["test_perplexity"] < res["vocab_size"]
        assert res[side]["wall_seconds"] > 0
    assert res["lmjax"]["epochs"][0]["val_perplexity_stream"] > 1
    md = (out / "quality.md").read_text()
    assert "lmjax: test perplexity" in md and "torch: test perplexity" in md
    # the regularized side: wordlm_regularized for the reference's wall time less lmjax's
    # non-training time
    rg, lj = res["regularized"], res["lmjax"]
    assert rg["time_budget_s"] == pytest.approx(
        max(1.0, res["torch"]["wall_seconds"] - (lj["wall_seconds"] - lj["train_seconds"])))
    assert 1 < rg["test_perplexity"] < res["vocab_size"]
    import yaml
    rcfg = yaml.safe_load((out / "regularized_run" / "config.yaml").read_text())
    assert rcfg["train"]["time_budget_s"] == pytest.approx(rg["time_budget_s"], abs=0.05)
    assert rcfg["model"]["tie_embeddings"] and rcfg["model"]["weight_drop"] > 0
    assert res["regularized_vs_torch"] == pytest.approx(
        rg["test_perplexity"] / res["torch"]["test_perplexity"])
    assert "wordlm_regularized" in md
    # its continuous cache: scored beside the LSTM's own figure, the reference's left without
    assert rg["cache"] == {"window": 2000, "theta": 0.6, "lam": 0.2}
    assert 1 < rg["test_cache_perplexity"] < res["vocab_size"]
    assert rg["test_cache_perplexity"] != pytest.approx(rg["test_perplexity"], rel=1e-4)
    assert res["regularized_cache_vs_torch"] == pytest.approx(
        rg["test_cache_perplexity"] / res["torch"]["test_perplexity"])
    assert "test_cache_perplexity" not in lj and "with its continuous cache" in md
    score = subprocess.run([sys.executable, "-m", "experiments.score",
                            f"run={res['lmjax']['run_dir']}", "checkpoint=best",
                            f"file={files['test']}", "context=stream"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert score.returncode == 0, score.stderr[-2000:]
    from lmjax.fmt import num
    assert f"perplexity {num(res['lmjax']['test_perplexity'])}" in score.stdout
    # a second run into the same dir is refused, nothing overwritten
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds a benchmark" in again.stderr


def test_presets_hold_the_reference_defaults_and_the_regularized_recipe():
    from hydra import compose, initialize_config_dir

    from lmjax.config import from_dictconfig, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        ref, reg = (from_dictconfig(compose("config", overrides=[
            "name=t", f"experiment={e}", "data=files", "data.train=x.txt"]))
            for e in ("wordlm_reference", "wordlm_regularized"))
    m, o, f = ref.model, ref.optim, ref.framing
    assert (m.embed_size, m.hidden_size, m.num_layers, m.dropout) == (200, 200, 2, 0.2)
    # the reference also drops its embeddings, and initialises as PyTorch does
    assert (m.input_dropout, m.init) == (0.2, "torch")
    assert (o.name, o.lr, o.clip_norm, o.schedule, o.plateau_factor) == (
        "sgd", 20.0, 0.25, "plateau", 0.25)
    assert (f.name, f.level, f.seq_len, f.carry_state) == ("sequence", "word", 35, True)
    assert (ref.train.batch_size, ref.train.epochs) == (20, 40)
    assert (ref.data.tokenizer, ref.data.eos, ref.data.vocab) == ("whitespace", True, "all")
    r = reg.model
    assert r.tie_embeddings and r.dropout == 0 and r.locked_dropout > 0 and r.weight_drop > 0
    assert (r.cache_window, r.cache_theta, r.cache_lambda) == (2000, 0.6, 0.2)
    assert m.cache_window == 0  # the reference scores its LSTM alone
    assert reg.train.time_budget_s == 900 and reg.optim == ref.optim


def test_reference_seed_follows_the_runs_seed(tmp_path):
    """seed=0: the example's own seed (1111); seed=k: 1111 + k, so seed repeats redraw both."""
    pytest.importorskip("torch", reason="the PyTorch reference needs the bench extra")
    files = _corpus(tmp_path)
    seeds = [quality.recipe_of(quality.compose(REPO / "conf", _overrides(files) + extra, 1),
                               1, 10).seed for extra in ([], ["seed=2"])]
    assert seeds == [1111, 1113]
