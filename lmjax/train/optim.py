"""Optimizers by name, always behind global-norm gradient clipping, and their learning rates.

Schedules: ``constant``; ``cosine`` / ``linear`` decay over ``optim.decay_steps`` optimizer steps
(``auto``: the whole run, ``train.epochs`` x steps per epoch, resolved by the training loop,
which knows the steps per epoch); ``plateau``: the learning rate is optimizer state (optax's
``inject_hyperparams``), multiplied by ``optim.plateau_factor`` by :func:`plateau_update` after
each epoch whose validation loss is not lower than the best so far. Being state, it is saved in
every checkpoint with the rest of the optimizer and restored on resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lmjax.config import OptimConfig
from lmjax.errors import ConfigError


def decay_steps(cfg: OptimConfig, total_steps: int | None = None) -> int:
    """``optim.decay_steps``, with ``auto`` resolved to ``total_steps`` (the whole run)."""
    if cfg.decay_steps != "auto":
        return int(cfg.decay_steps)
    if total_steps is None:
        raise ConfigError("optim.decay_steps=auto is resolved by training (epochs x steps per "
                          "epoch); give a number of steps here")
    return max(1, int(total_steps))


def resolved(cfg: OptimConfig, total_steps: int) -> OptimConfig:
    """``cfg`` with ``decay_steps=auto`` replaced by the run's ``total_steps``."""
    if cfg.decay_steps != "auto":
        return cfg
    return dataclasses.replace(cfg, decay_steps=decay_steps(cfg, total_steps))


def learning_rate(cfg: OptimConfig, total_steps: int | None = None) -> float | optax.Schedule:
    """``cfg.lr``, or a schedule from it: cosine or linear decay to ``lr * final_lr_frac`` over
    ``decay_steps`` optimizer steps, held there afterwards (``plateau``: ``cfg.lr``, the
    starting value of the injected learning rate)."""
    if cfg.schedule in ("constant", "plateau"):
        return cfg.lr
    steps = decay_steps(cfg, total_steps)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, steps, alpha=cfg.final_lr_frac)
    return optax.linear_schedule(cfg.lr, cfg.lr * cfg.final_lr_frac, steps)


def make_optimizer(cfg: OptimConfig, total_steps: int | None = None
                   ) -> optax.GradientTransformation:
    """adam | rmsprop | sgd, matching Keras' defaults (eps 1e-7; rmsprop's eps outside the sqrt).

    ``total_steps``: the run's optimizer steps, for ``decay_steps=auto``; without it (loading
    a run for inference, where only the state's structure matters) auto counts as one step.
    """
    if cfg.decay_steps == "auto" and total_steps is None:
        total_steps = 1
    lr = learning_rate(cfg, total_steps)
    if cfg.name == "adam":
        make, kw = optax.adam, {"eps": cfg.eps}
    elif cfg.name == "rmsprop":
        make, kw = optax.rmsprop, {"decay": cfg.rho, "eps": cfg.eps, "eps_in_sqrt": False}
    else:
        make, kw = optax.sgd, {"momentum": cfg.momentum or None}
    if cfg.schedule == "plateau":  # the lr lives in the optimizer state (plateau_update)
        opt = optax.inject_hyperparams(make, static_args=tuple(kw))(learning_rate=lr, **kw)
    else:
        opt = make(lr, **kw)
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt


# the state of optax.inject_hyperparams (InjectStatefulHyperparamsState in recent optax)
_INJECTED = tuple(c for c in (getattr(optax, "InjectStatefulHyperparamsState", None),
                              optax.InjectHyperparamsState) if c is not None)


def _is_injected(x: Any) -> bool:
    return isinstance(x, _INJECTED)


def _injected(opt_state: Any) -> list:
    """The injected-hyperparameter states in ``opt_state`` (one for schedule=plateau)."""
    return [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_injected)
            if _is_injected(s)]


def plateau_update(opt_state: Any, val_loss: float, best: float | None,
                   factor: float = 0.25) -> Any:
    """The optimizer state after an epoch's evaluation: the learning rate times ``factor``
    when ``val_loss`` is not lower than ``best`` (the best validation loss before this epoch;
    ``None``: the first epoch, never lowered), unchanged otherwise. Pure: returns a new state."""
    improved = best is None or val_loss < best

    def update(s: Any) -> Any:
        if not _is_injected(s):
            return s
        lr = s.hyperparams["learning_rate"]
        new = lr if improved else lr * jnp.asarray(factor, jnp.asarray(lr).dtype)
        return s._replace(hyperparams={**s.hyperparams, "learning_rate": new})

    if not _injected(opt_state):
        raise ValueError("plateau_update needs an optimizer made with optim.schedule=plateau")
    return jax.tree_util.tree_map(update, opt_state, is_leaf=_is_injected)


def current_lr(cfg: OptimConfig, opt_state: Any, step: int,
               total_steps: int | None = None) -> float:
    """The learning rate of the last step taken (for the epoch record): the injected value
    for ``plateau``, the schedule's value at ``step - 1`` otherwise."""
    if cfg.schedule == "plateau":
        return float(jax.device_get(_injected(opt_state)[0].hyperparams["learning_rate"]))
    lr = learning_rate(cfg, total_steps if cfg.decay_steps == "auto" else None)
    return float(lr(max(0, step - 1))) if callable(lr) else float(lr)
