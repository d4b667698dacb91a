"""Learning-rate schedules: exact values, and that the optimizer's steps follow them."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import OptimConfig, from_dict
from lmjax.errors import ConfigError
from lmjax.train.optim import learning_rate, make_optimizer


def test_constant_is_the_plain_lr():
    assert learning_rate(OptimConfig(lr=0.01)) == 0.01


def test_cosine_and_linear_values():
    cos = learning_rate(OptimConfig(lr=0.01, schedule="cosine", decay_steps=100,
                                    final_lr_frac=0.1))
    for step in (0, 25, 50, 100, 150):
        t = min(step, 100) / 100
        want = 0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        assert float(cos(step)) == pytest.approx(want, rel=1e-6)
    lin = learning_rate(OptimConfig(lr=0.02, schedule="linear", decay_steps=10))
    assert [round(float(lin(s)), 6) for s in (0, 5, 10, 20)] == [0.02, 0.01, 0.0, 0.0]


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_scheduled_updates_scale_with_the_schedule(name):
    """These updates are linear in the learning rate: with a schedule, step k's update is the
    constant-lr update times schedule(k) / lr (same gradients, clipping included)."""
    base = OptimConfig(name=name, lr=0.05, clip_norm=1.0)
    sched = OptimConfig(name=name, lr=0.05, clip_norm=1.0, schedule="cosine", decay_steps=4,
                        final_lr_frac=0.2)
    lr_at = learning_rate(sched)
    params = {"w": jnp.zeros(3)}
    grads = [{"w": jnp.asarray(g, jnp.float32)} for g in
             ([1.0, -2.0, 0.5], [3.0, 0.1, -1.0], [0.2, 0.2, 0.2], [-1.0, 4.0, 2.0],
              [0.5, 0.5, -0.5], [1.0, 1.0, 1.0])]
    tx_a, tx_b = make_optimizer(base), make_optimizer(sched)
    sa, sb = tx_a.init(params), tx_b.init(params)
    for k, g in enumerate(grads):
        ua, sa = tx_a.update(g, sa, params)
        ub, sb = tx_b.update(g, sb, params)
        np.testing.assert_allclose(ub["w"], ua["w"] * float(lr_at(k)) / 0.05, rtol=1e-5)
    assert float(lr_at(5)) == pytest.approx(0.05 * 0.2)


def test_bad_schedule_configs_are_rejected():
    with pytest.raises(ConfigError, match="decay_steps"):
        OptimConfig(schedule="cosine")
    with pytest.raises(ConfigError, match="schedule"):
        OptimConfig(schedule="step", decay_steps=5)
    with pytest.raises(ConfigError, match="final_lr_frac"):
        OptimConfig(schedule="linear", decay_steps=5, final_lr_frac=1.5)
    cfg = from_dict({"optim": {"name": "adam", "lr": 0.003, "schedule": "cosine",
                               "decay_steps": 7}})
    assert cfg.optim.schedule == "cosine" and cfg.optim.decay_steps == 7


# --- plateau schedule and decay_steps=auto ---------------------------------------------------

def test_plateau_update_multiplies_the_lr_only_without_improvement():
    from lmjax.train.optim import current_lr, plateau_update

    cfg = OptimConfig(name="sgd", lr=20.0, clip_norm=0.25, schedule="plateau")
    tx = make_optimizer(cfg)
    params = {"w": jnp.ones(3)}
    s0 = tx.init(params)
    assert current_lr(cfg, s0, 0) == 20.0
    assert current_lr(cfg, plateau_update(s0, 5.0, None), 0) == 20.0  # first epoch: no best
    assert current_lr(cfg, plateau_update(s0, 4.0, 5.0), 0) == 20.0  # improved
    s1 = plateau_update(s0, 5.0, 5.0)  # equal is not lower: x 0.25
    assert current_lr(cfg, s1, 0) == 5.0
    assert current_lr(cfg, plateau_update(s1, 6.0, 5.0, factor=0.5), 0) == 2.5
    assert current_lr(cfg, s0, 0) == 20.0  # pure: the old state is unchanged
    # the injected lr is the one the optimizer uses: sgd's update is -lr * clipped gradient
    g = {"w": jnp.asarray([0.1, 0.0, 0.0])}  # norm 0.1 < clip 0.25
    u0, _ = tx.update(g, s0, params)
    u1, _ = tx.update(g, s1, params)
    np.testing.assert_allclose(u0["w"], [-2.0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(u1["w"], [-0.5, 0, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="plateau"):
        plateau_update(make_optimizer(OptimConfig()).init(params), 1.0, 0.5)


def test_plateau_and_auto_configs():
    from lmjax.config import Config, TrainConfig
    from lmjax.train.optim import decay_steps

    with pytest.raises(ConfigError, match="plateau_factor"):
        OptimConfig(schedule="plateau", plateau_factor=0.0)
    with pytest.raises(ConfigError, match="decay_steps must be a number >= 0 or auto"):
        OptimConfig(schedule="cosine", decay_steps="soon")
    with pytest.raises(ConfigError, match="parallel_seeds"):
        Config(optim=OptimConfig(schedule="plateau"), train=TrainConfig(parallel_seeds=2))
    auto = OptimConfig(schedule="linear", decay_steps="auto")
    assert decay_steps(auto, 120) == 120
    with pytest.raises(ConfigError, match="auto"):
        learning_rate(auto)
    lin = learning_rate(auto, total_steps=10)
    assert [round(float(lin(s)), 6) for s in (0, 5, 10)] == [1e-3, 5e-4, 0.0]


def test_decay_steps_auto_and_numbers_compose_from_the_command_line():
    from hydra import compose, initialize_config_dir

    from lmjax.config import from_dictconfig, register_configs
    from tests.conftest import REPO

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        auto = from_dictconfig(compose("config", overrides=[
            "name=t", "optim.schedule=cosine", "optim.decay_steps=auto"]))
        num = from_dictconfig(compose("config", overrides=[
            "name=t", "optim.schedule=cosine", "optim.decay_steps=300"]))
        plat = from_dictconfig(compose("config", overrides=[
            "name=t", "optim=sgd", "optim.schedule=plateau", "optim.plateau_factor=0.5"]))
    assert auto.optim.decay_steps == "auto" and num.optim.decay_steps == 300
    assert plat.optim.schedule == "plateau" and plat.optim.plateau_factor == 0.5


def _plateau_cfg(epochs: int, resume: bool = False, schedule: str = "plateau"):
    from lmjax.config import (Config, DataConfig, FramingConfig, LoggerConfig, ModelConfig,
                              SampleConfig, TrainConfig)

    # lr 300 on Jack and Jill (val = train): the loss jumps up now and then
    return Config(data=DataConfig(split="none"), framing=FramingConfig(name="sequence", seq_len=5),
                  model=ModelConfig(embed_size=8, hidden_size=16),
                  optim=OptimConfig(name="sgd", lr=300.0, clip_norm=0.25, schedule=schedule,
                                    decay_steps="auto" if schedule == "cosine" else 0),
                  train=TrainConfig(epochs=epochs, batch_size=4, progress=False,
                                    checkpoint_every_s=0),
                  logger=LoggerConfig(name="none"), sample=SampleConfig(prompts=["jack"], length=2),
                  resume=resume)


def _rows(run_dir):
    import json

    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_plateau_end_to_end_drops_exactly_when_val_loss_does_not_improve_and_resumes(tmp_path):
    """Jack and Jill, SGD at lr 300: the lr of epoch k + 1 (metrics.jsonl's ``lr``) is epoch k's
    times 0.25 exactly when epoch k's val loss is not below the best before it; a run stopped
    after 5 epochs (its last checkpoint holds the lr lowered after epoch 5) and resumed to 6
    logs the same lr and losses as an uninterrupted one."""
    from lmjax.train.loop import run

    run(_plateau_cfg(6), tmp_path / "whole")
    rows = _rows(tmp_path / "whole")
    lrs, vals = [r["lr"] for r in rows], [r["val_loss"] for r in rows]
    assert lrs[0] == 300.0
    for k in range(1, len(rows)):
        worse = vals[k - 1] >= min(vals[:k - 1], default=math.inf)
        assert lrs[k] == pytest.approx(lrs[k - 1] * (0.25 if worse else 1.0), rel=1e-6), k
    assert lrs[-1] < lrs[-2] < 300.0  # dropped twice, the second time after epoch 5
    run(_plateau_cfg(5), tmp_path / "split")
    run(_plateau_cfg(6, resume=True), tmp_path / "split")
    again = _rows(tmp_path / "split")
    keep = ("epoch", "lr", "val_loss", "train_loss", "train_running_loss")
    assert [{k: r[k] for k in keep} for r in again] == [{k: r[k] for k in keep} for r in rows]


def test_under_carry_state_plateau_and_best_checkpoint_follow_the_carried_val_loss(tmp_path):
    """framing.carry_state: the lr drops after an epoch whose val_carried_loss (not val_loss)
    is not below the best before it, and best_step is the epoch of the lowest carried loss."""
    import dataclasses
    import json

    from lmjax.train.loop import run

    cfg = _plateau_cfg(8)
    cfg = dataclasses.replace(cfg, framing=dataclasses.replace(cfg.framing, carry_state=True,
                                                                cross_lines=True, step=0, seq_len=2),
                              train=dataclasses.replace(cfg.train, batch_size=2))
    run(cfg, tmp_path / "c")
    rows = _rows(tmp_path / "c")
    lrs, vals = [r["lr"] for r in rows], [r["val_carried_loss"] for r in rows]
    drops = 0
    for k in range(1, len(rows)):
        worse = vals[k - 1] >= min(vals[:k - 1], default=math.inf)
        drops += worse
        assert lrs[k] == pytest.approx(lrs[k - 1] * (0.25 if worse else 1.0), rel=1e-6), k
    assert drops >= 1
    # the two validation losses differ, so best_val_loss tells which one the run followed
    blocks = [r["val_loss"] for r in rows]
    assert min(blocks) != pytest.approx(min(vals), rel=1e-4)
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["best_val_loss"] == pytest.approx(min(vals))
    assert summary["best_step"] == rows[vals.index(min(vals))]["step"]


def test_cosine_auto_decays_over_the_whole_run(tmp_path):
    from lmjax.train.loop import run

    run(_plateau_cfg(3, schedule="cosine"), tmp_path / "cos")
    rows = _rows(tmp_path / "cos")
    # Jack and Jill as 5-word blocks, batch 4: 2 steps per epoch, 6 in all; epoch k's record
    # holds the lr of its last step (2k - 1) on a cosine over the 6 steps
    want = [300.0 * 0.5 * (1 + math.cos(math.pi * (2 * k - 1) / 6)) for k in (1, 2, 3)]
    assert [r["lr"] for r in rows] == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_plateau_survives_kills(tmp_path):
    """SIGKILL after epoch 3's metrics line (val loss up: its lr drop applied in memory, not yet
    saved), then inside a mid-epoch chunk of the resumed run: the run resumed to the end logs
    the same lr and losses, bit for bit, as the uninterrupted run."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    args = ["framing=sequence", "framing.level=word", "framing.seq_len=5", "model.embed_size=8",
            "model.hidden_size=16", "optim=sgd", "optim.lr=300", "optim.clip_norm=0.25",
            "optim.schedule=plateau", "train.epochs=6", "train.batch_size=4",
            "train.steps_per_call=1", "train.checkpoint_every_s=0",
            "train.checkpoint_every_steps=3", "train.progress=false", "logger=none",
            "sample.prompts=[jack]", "sample.length=2"]

    def cli(run_dir, *extra, kill=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LMJAX_TEST_")}
        if kill:
            env["LMJAX_TEST_KILL_AT"] = kill
        return subprocess.run([sys.executable, "-m", "experiments.run", *args,
                               f"hydra.run.dir={run_dir}", *extra], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)

    assert cli(tmp_path / "whole").returncode == 0
    want = _rows(tmp_path / "whole")
    assert want[3]["lr"] == want[2]["lr"] * 0.25  # epoch 3's val loss went up: the kill's drop
    run_dir = tmp_path / "killed"
    assert cli(run_dir, kill="logged:3").returncode == -9
    assert cli(run_dir, "resume=true", kill="chunk:3").returncode == -9
    r = cli(run_dir, "resume=true")
    assert r.returncode == 0, r.stderr
    drop = {"train_seconds", "wall_seconds"}
    assert [{k: v for k, v in x.items() if k not in drop} for x in _rows(run_dir)] == \
        [{k: v for k, v in x.items() if k not in drop} for x in want]


def test_resolved_fills_in_auto_only():
    from lmjax.train.optim import resolved

    auto = OptimConfig(schedule="cosine", decay_steps="auto")
    assert resolved(auto, 42).decay_steps == 42
    fixed = OptimConfig(schedule="cosine", decay_steps=7)
    assert resolved(fixed, 42) is fixed
