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


def test_parallel_seeds_split_over_devices(tmp_path):
    """train.devices=auto with 2 forced CPU devices: the seed axis is split over them (3 seeds
    padded to 4); every written seed equals the one-device vmapped run."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    def cli(run_dir, devices, env_extra):
        args = [sys.executable, "-m", "experiments.run", "framing=two_word", "train.epochs=4",
                "train.batch_size=8", "seed=5", "train.parallel_seeds=3", "logger=none",
                "train.progress=false", f"train.devices={devices}", f"hydra.run.dir={run_dir}"]
        p = subprocess.run(args, cwd=REPO, env=dict(os.environ, **env_extra),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]

    two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    cli(tmp_path / "one", "1", two)
    cli(tmp_path / "split", "auto", two)
    assert sorted(p.name for p in (tmp_path / "split").glob("seed_*")) == [
        "seed_5", "seed_6", "seed_7"]  # the padding seed (8) is not written
    for s in (5, 6, 7):
        a = json.loads((tmp_path / "one" / f"seed_{s}" / "summary.json").read_text())
        b = json.loads((tmp_path / "split" / f"seed_{s}" / "summary.json").read_text())
        for k in ("train_loss", "val_loss", "val_accuracy"):
            assert b[k] == pytest.approx(a[k], rel=1e-5), (s, k)
