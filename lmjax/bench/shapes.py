"""The benchmark's model shapes (configs A-D) and its settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from lmjax.errors import ConfigError


@dataclass(frozen=True)
class Shape:
    """One benchmark config: the same model and batch for every implementation.

    embed 0 means one-hot inputs (the keyboard tutorial); last_only puts the loss on the last
    position only (many-to-one), else on every position.
    """

    name: str
    vocab: int
    embed: int
    hidden: int
    layers: int
    seq_len: int
    batch: int
    last_only: bool
    what: str = ""

    @property
    def tokens_per_step(self) -> int:
        """Input tokens one train step reads (batch x seq_len)."""
        return self.batch * self.seq_len


SHAPES: dict[str, Shape] = {
    "A": Shape("A", 57, 0, 128, 1, 40, 128, True,
               "one-hot 57 chars, T 40, batch 128, LSTM 128, loss on the last step"),
    "B": Shape("B", 57, 0, 128, 1, 40, 128, False,
               "one-hot 57 chars, T 40, batch 128, LSTM 128, loss at all 40 positions"),
    "C": Shape("C", 10000, 200, 200, 2, 35, 20, False,
               "vocab 10k, embedding 200, 2 x LSTM 200, T 35, batch 20"),
    "D": Shape("D", 10000, 650, 650, 2, 35, 20, False,
               "vocab 10k, embedding 650, 2 x LSTM 650, T 35, batch 20"),
}

IMPLS = ("lmjax", "lmjax_dp", "torch", "flax", "keras")


@dataclass
class BenchConfig:
    """``bench.*`` keys of ``python -m experiments.bench``."""

    configs: List[str] = field(default_factory=lambda: list(SHAPES))
    impls: List[str] = field(default_factory=lambda: list(IMPLS))
    rounds: int = 7  # timed rounds per implementation, interleaved
    round_s: float = 1.0  # target seconds per timed round (steps per round set from warm-up)
    warmup_rounds: int = 2  # untimed rounds after compiling
    lr: float = 1e-3  # Adam, behind clip_by_global_norm(5) in every implementation
    loop_overhead: bool = True  # also time lmjax's training loop against its bare step (config A)
    loop_epochs: int = 3
    first_step: bool = True  # time experiments.run to its first train chunk, cold and warm cache
    first_step_repeats: int = 3  # cold/warm pairs (each pair gets a fresh, empty cache)
    out: str = "results/bench/bench.json"  # the Markdown table goes next to it (.md)
    seed: int = 0

    def __post_init__(self) -> None:
        self.configs = [str(c).upper() for c in self.configs]
        self.impls = [str(i).lower() for i in self.impls]
        bad = [c for c in self.configs if c not in SHAPES]
        if bad or not self.configs:
            raise ConfigError(f"unknown bench config {bad}; choose from {', '.join(SHAPES)}")
        bad = [i for i in self.impls if i not in IMPLS]
        if bad or not self.impls:
            raise ConfigError(f"unknown bench impl {bad}; choose from {', '.join(IMPLS)}")
        if (self.rounds < 1 or self.round_s <= 0 or self.warmup_rounds < 0
                or self.loop_epochs < 2 or self.first_step_repeats < 1):
            raise ConfigError("bench.rounds >= 1, bench.round_s > 0, bench.warmup_rounds >= 0, "
                              "bench.loop_epochs >= 2 and bench.first_step_repeats >= 1 are "
                              "required")
