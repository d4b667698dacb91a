"""Hand-built 'models' with known log-probabilities, for exact checks of the inference code."""

from __future__ import annotations

import numpy as np

from lmjax.data.vocab import Vocab


def char_vocab(chars: str = " .ab") -> Vocab:
    return Vocab("char", ("<pad>", "<unk>", *sorted(chars)))


class Bigram:
    """log p(next | context) depends on the last token only: ``table[last]`` (rows normalised).

    Records every batch it is called with (``calls``) so tests can count predict calls.
    """

    def __init__(self, probs: np.ndarray):
        probs = np.asarray(probs, np.float64)
        self.logp = np.log(probs / probs.sum(1, keepdims=True)).astype(np.float32)
        self.calls: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        self.calls.append(x.copy())
        return self.logp[x[:, -1]]


def random_bigram(v: int, seed: int = 0, zero_pad: bool = True) -> Bigram:
    rng = np.random.default_rng(seed)
    p = rng.random((v, v)) + 0.05
    if zero_pad:
        p[:, 0] = 1e-6  # padding is (almost) never predicted
    return Bigram(p)
