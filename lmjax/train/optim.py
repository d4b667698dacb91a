"""Optimizers by name, always behind global-norm gradient clipping."""

from __future__ import annotations

import optax

from lmjax.config import OptimConfig


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """adam | rmsprop | sgd, matching Keras' defaults (eps 1e-7; rmsprop's eps outside the sqrt)."""
    if cfg.name == "adam":
        opt = optax.adam(cfg.lr, eps=cfg.eps)
    elif cfg.name == "rmsprop":
        opt = optax.rmsprop(cfg.lr, decay=cfg.rho, eps=cfg.eps, eps_in_sqrt=False)
    else:
        opt = optax.sgd(cfg.lr, momentum=cfg.momentum or None)
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt
