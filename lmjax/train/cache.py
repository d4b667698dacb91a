"""A continuous cache for stream scoring (Grave, Joulin & Usunier, "Improving Neural Language
Models with a Continuous Cache", ICLR 2017; also used on top of AWD-LSTM, Merity et al. 2018).

While a text runs through the model as one stream, the top-layer LSTM output ``h_i`` of each
position is kept with the token ``y_i`` that followed it, for the last ``window`` positions. The
next token is then predicted by

    p(w) = (1 - lambda) * p_lstm(w) + lambda * sum_{i in window, y_i = w} softmax_i(theta h_t . h_i)

Only tokens before the one predicted are used (as with the carried LSTM state) and nothing is
trained: ``window``, ``theta`` and ``lambda`` are chosen on validation text. The stream's first
position, with an empty cache, uses ``p_lstm`` alone. Config: ``model.cache_window`` (0: off),
``model.cache_theta``, ``model.cache_lambda``; metrics ``test_cache_*`` (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CacheSpec:
    window: int  # positions kept (> 0)
    theta: float  # the flatness of the attention over the cache (> 0)
    lam: float  # the cache's weight in the mixture, [0, 1]

    @classmethod
    def from_model(cls, model_cfg) -> "CacheSpec | None":
        """The cache of a ``ModelConfig`` (``model.cache_*``), None when cache_window is 0."""
        if not model_cfg.cache_window:
            return None
        return cls(model_cfg.cache_window, model_cfg.cache_theta, model_cfg.cache_lambda)


class ContinuousCache:
    """The cache of one stream, fed chunk by chunk in order (:meth:`mix`)."""

    def __init__(self, spec: CacheSpec):
        self.spec = spec
        self.keys: np.ndarray | None = None  # (n, H) float64, the last n <= window outputs
        self.next: np.ndarray = np.zeros(0, np.int64)  # (n,) the token after each

    def mix(self, logp: np.ndarray, h: np.ndarray, y: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        """One chunk of consecutive positions: the model's log-probabilities ``logp`` (m, V),
        top-layer outputs ``h`` (m, H) and the tokens ``y`` (m,) that follow -> the mixture's
        log-probability of each ``y`` and whether it ranked first (ties count as right). Then
        the chunk joins the cache."""
        spec, m = self.spec, len(y)
        h = np.asarray(h, np.float64)
        y = np.asarray(y, np.int64)
        keys = h if self.keys is None else np.concatenate([self.keys, h])
        nxt = np.concatenate([self.next, y])
        n0 = len(keys) - m  # query r sits at index n0 + r of keys
        q = n0 + np.arange(m)[:, None]
        j = np.arange(len(keys))[None, :]
        valid = (j < q) & (j >= q - spec.window)
        s = np.where(valid, spec.theta * (h @ keys.T), -np.inf)
        top = s.max(axis=1, keepdims=True)
        w = np.exp(s - np.where(np.isfinite(top), top, 0.0))  # 0 where not valid
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total > 0, total, 1.0)
        v = logp.shape[1]  # cache[r, w]: the weights of row r's positions followed by w
        cache = np.bincount((np.arange(m)[:, None] * v + nxt).ravel(), weights=w.ravel(),
                            minlength=m * v).reshape(m, v)
        lam = np.where(total[:, 0] > 0, spec.lam, 0.0)[:, None]  # an empty cache: the LSTM alone
        p = (1.0 - lam) * np.exp(np.asarray(logp, np.float64)) + lam * cache
        pt = p[np.arange(m), y]
        self.keys, self.next = keys[-spec.window:], nxt[-spec.window:]
        with np.errstate(divide="ignore"):
            return np.log(pt), pt >= p.max(axis=1)
