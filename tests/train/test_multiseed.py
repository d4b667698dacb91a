"""train.parallel_seeds=K: K seeds in one vmapped program give each seed's own single run."""

import dataclasses
import json

import pytest

from lmjax.config import DataConfig, FramingConfig, TrainConfig
from lmjax.train.loop import run
from lmjax.train.multiseed import run_seeds
from tests.train.test_loop import quiet

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_perplexity",
           "oracle_train_accuracy", "params", "num_sequences", "samples")


def test_parallel_seeds_match_sequential_runs(tmp_path):
    cfg = quiet(data=DataConfig(split="none"), framing=FramingConfig(name="n_words", n_words=2),
                train=TrainConfig(progress=False, epochs=4, batch_size=8,
                                  parallel_seeds=3), seed=5)
    together = run_seeds(cfg, tmp_path / "together")
    assert [s["seed"] for s in together] == [5, 6, 7]
    losses = set()
    for i, s in enumerate(together):
        d = tmp_path / "together" / f"seed_{5 + i}"
        for f in ("config.yaml", "vocab.json", "metrics.jsonl", "summary.json"):
            assert (d / f).is_file(), f
        assert len((d / "metrics.jsonl").read_text().splitlines()) == 4
        alone_cfg = dataclasses.replace(cfg, seed=5 + i, train=dataclasses.replace(
            cfg.train, parallel_seeds=1))
        alone = run(alone_cfg, tmp_path / f"alone_{i}")
        for k in METRICS:
            if isinstance(alone[k], float):
                assert together[i][k] == pytest.approx(alone[k], rel=1e-5, abs=1e-6), k
            else:
                assert together[i][k] == alone[k], k
        assert json.loads((d / "summary.json").read_text())["val_loss"] == together[i]["val_loss"]
        losses.add(round(together[i]["train_loss"], 6))
    assert len(losses) == 3  # the seeds really differ
