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
