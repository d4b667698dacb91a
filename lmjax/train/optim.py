"""Optimizers by name, always behind global-norm gradient clipping."""

from __future__ import annotations

import optax

from lmjax.config import OptimConfig


def learning_rate(cfg: OptimConfig) -> float | optax.Schedule:
    """``cfg.lr``, or a schedule from it: cosine or linear decay to ``lr * final_lr_frac`` over
    ``decay_steps`` optimizer steps, held there afterwards."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, cfg.decay_steps, alpha=cfg.final_lr_frac)
    return optax.linear_schedule(cfg.lr, cfg.lr * cfg.final_lr_frac, cfg.decay_steps)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """adam | rmsprop | sgd, matching Keras' defaults (eps 1e-7; rmsprop's eps outside the sqrt)."""
    lr = learning_rate(cfg)
    if cfg.name == "adam":
        opt = optax.adam(lr, eps=cfg.eps)
    elif cfg.name == "rmsprop":
        opt = optax.rmsprop(lr, decay=cfg.rho, eps=cfg.eps, eps_in_sqrt=False)
    else:
        opt = optax.sgd(lr, momentum=cfg.momentum or None)
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt
