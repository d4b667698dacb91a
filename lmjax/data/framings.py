"""Framings: pure NumPy functions from token ids to ``inputs``, ``targets``, ``weights``, all [N, T].

``targets[n, t]`` is always the token that follows ``inputs[n, t]`` (0 where that is padding), so
one loss serves every framing; ``weights`` says which positions count. Many-to-one framings
(one word, n words, line prefixes, char windows) weight the last position only; ``sequence``
weights every position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lmjax.config import FramingConfig
from lmjax.data.vocab import PAD_ID
from lmjax.errors import DataError


@dataclass(frozen=True)
class Framed:
    inputs: np.ndarray  # (N, T) int32
    targets: np.ndarray  # (N, T) int32, targets[:, t] follows inputs[:, t]
    weights: np.ndarray  # (N, T) float32

    def __post_init__(self) -> None:
        assert self.inputs.ndim == 2, self.inputs.shape
        assert self.inputs.shape == self.targets.shape == self.weights.shape

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]

    def take(self, idx: np.ndarray) -> "Framed":
        return Framed(self.inputs[idx], self.targets[idx], self.weights[idx])


def _windows(streams: Sequence[np.ndarray], width: int, stride: int) -> np.ndarray:
    """All windows of ``width`` + 1 tokens (input + the token after), every ``stride`` tokens."""
    parts = [sliding_window_view(s, width + 1)[::stride] for s in streams if len(s) > width]
    if not parts:
        return np.zeros((0, width + 1), np.int32)
    return np.concatenate(parts).astype(np.int32)


def _many_to_one(win: np.ndarray) -> Framed:
    w = np.zeros(win[:, 1:].shape, np.float32)
    w[:, -1] = 1.0
    return Framed(np.ascontiguousarray(win[:, :-1]), np.ascontiguousarray(win[:, 1:]), w)


def _streams(lines: Sequence[np.ndarray], cross_lines: bool) -> list[np.ndarray]:
    if cross_lines:
        return [np.concatenate(lines).astype(np.int32)] if lines else []
    return [np.asarray(line, np.int32) for line in lines]


def n_words(lines: Sequence[np.ndarray], n: int, cross_lines: bool = True) -> Framed:
    """n tokens in, the next token out; windows slide one token at a time."""
    return _many_to_one(_windows(_streams(lines, cross_lines), n, 1))


def line_by_line(lines: Sequence[np.ndarray]) -> Framed:
    """Every prefix (length >= 1) of every line, left-padded to the longest, predicting the next."""
    lengths = [len(line) for line in lines if len(line) >= 2]
    if not lengths:
        return _many_to_one(np.zeros((0, 2), np.int32))
    t = max(lengths) - 1
    rows = []
    for line in lines:
        line = np.asarray(line, np.int32)
        for k in range(1, len(line)):
            row = np.full(t + 1, PAD_ID, np.int32)
            row[t - k:] = line[: k + 1]
            rows.append(row)
    return _many_to_one(np.stack(rows))


def char_windows(lines: Sequence[np.ndarray], seq_len: int, step: int,
                 cross_lines: bool = True) -> Framed:
    """``seq_len`` characters in, the next out, a window every ``step`` characters."""
    return _many_to_one(_windows(_streams(lines, cross_lines), seq_len, step))


def sequence(lines: Sequence[np.ndarray], seq_len: int, step: int = 0,
             cross_lines: bool = True) -> Framed:
    """Blocks of ``seq_len`` tokens predicting the next token at every position."""
    win = _windows(_streams(lines, cross_lines), seq_len, step or seq_len)
    return Framed(np.ascontiguousarray(win[:, :-1]), np.ascontiguousarray(win[:, 1:]),
                  np.ones(win[:, 1:].shape, np.float32))


FRAMINGS: dict[str, Callable[[Sequence[np.ndarray], FramingConfig], Framed]] = {
    "one_word": lambda lines, c: n_words(lines, 1, c.cross_lines),
    "n_words": lambda lines, c: n_words(lines, c.n_words, c.cross_lines),
    "line_by_line": lambda lines, c: line_by_line(lines),
    "char": lambda lines, c: char_windows(lines, c.seq_len, c.step, c.cross_lines),
    "sequence": lambda lines, c: sequence(lines, c.seq_len, c.step, c.cross_lines),
}


def frame(lines: Sequence[np.ndarray], cfg: FramingConfig, what: str = "text",
          seq_len: int | None = None) -> Framed:
    """Apply the configured framing; fail clearly when the text yields no sample.

    ``seq_len`` forces the window of ``line_by_line`` (whose width comes from the training
    text) so that validation samples have the training shape.
    """
    framed = FRAMINGS[cfg.name](lines, cfg)
    if len(framed) == 0:
        need = {"one_word": 2, "n_words": cfg.n_words + 1, "line_by_line": 2}.get(
            cfg.name, cfg.seq_len + 1)
        unit = "characters" if cfg.level == "char" else "words"
        where = " on one line" if (cfg.name == "line_by_line" or not cfg.cross_lines) else ""
        raise DataError(f"the {what} is too short for framing={cfg.name}: it needs at least "
                        f"{need} {unit}{where}")
    if seq_len is not None and framed.seq_len != seq_len:
        framed = fit_width(framed, seq_len)
    return framed


def fit_width(framed: Framed, t: int) -> Framed:
    """Left-pad or left-truncate every row to width ``t`` (the way prompts are fitted)."""
    cur = framed.seq_len
    if cur >= t:
        return Framed(framed.inputs[:, cur - t:], framed.targets[:, cur - t:],
                      framed.weights[:, cur - t:])
    pad = ((0, 0), (t - cur, 0))
    return Framed(np.pad(framed.inputs, pad), np.pad(framed.targets, pad),
                  np.pad(framed.weights, pad))
