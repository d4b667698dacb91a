"""How many training steps one jitted call runs: bounded by time, not by a step count.

The loop checks for SIGTERM / Ctrl-C, a checkpoint due and the time budget between calls, and
keeps one call queued behind the running one; so it reacts within about two calls. With
``train.chunk_seconds=S`` each call is sized to take about S / 2 seconds: the sizer starts from
a cautious guess (the model's arithmetic at a slow CPU's speed) and then follows the measured
time per step (the first call runs at most ``FIRST_MAX`` steps). Sizes are powers of two (1, 2, 4, ... up to the epoch's length), so a run
compiles only a few programs; a shorter chunk (an epoch's end, a resumed position) runs in the
next compiled size with padding rows the jitted loop stops before (``step.Steps``).
``train.steps_per_call=K`` fixes the size instead.
"""

from __future__ import annotations

import math

ASSUMED_FLOPS = 2e9  # floating-point operations per second of a slow CPU core: the first guess
FIRST_MAX = 64  # the first call runs at most this many steps, whatever the guess says


def pow2_floor(x: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(x, 1.0)))))


def pow2_ceil(n: int) -> int:
    return 1 << max(0, (max(n, 1) - 1).bit_length())


def step_flops(embed: int, hidden: int, layers: int, vocab: int, batch: int, seq_len: int,
               last_only: bool) -> float:
    """A train step's arithmetic, roughly: forward and backward (3x) of the LSTM gates at every
    position and of the output layer where targets are (the last position, or all)."""
    gates = sum(8 * hidden * ((embed or vocab) if i == 0 else hidden) + 8 * hidden * hidden
                for i in range(layers))
    outputs = (1 if last_only else seq_len) * 2 * hidden * vocab
    return 3.0 * batch * (seq_len * gates + outputs)


class ChunkSizer:
    """Steps per jitted call: ``size`` now; ``measured`` feeds back a call's real time."""

    def __init__(self, seconds: float, steps_per_epoch: int, flops_per_step: float = 0.0,
                 fixed: int = 0):
        self.target = seconds / 2  # one call runs while the next waits queued
        self.fixed = fixed
        self.cap = pow2_ceil(steps_per_epoch)
        self.step_s: float | None = None  # measured seconds per step (smoothed)
        self.short = 0  # calls in a row that took under a third of the target
        if fixed:
            self.size = fixed
        else:
            guess = flops_per_step / ASSUMED_FLOPS
            self.size = min(self.cap, FIRST_MAX,
                            pow2_floor(self.target / guess) if guess > 0 else 1)

    def chunk_seconds(self) -> float:
        """The expected time of one call of the current size (0 until measured)."""
        return 0.0 if self.step_s is None else self.size * self.step_s

    def measured(self, steps: int, seconds: float) -> None:
        """A call of ``steps`` steps ran ``seconds`` on the device (compilation excluded)."""
        if steps <= 0 or seconds <= 0:
            return
        per = seconds / steps
        first = self.step_s is None
        if first or per > 2 * self.step_s:  # first, or the machine got slower
            self.step_s = per
        else:
            self.step_s = 0.7 * self.step_s + 0.3 * per
        if self.fixed:
            return
        t = self.size * self.step_s
        # a new size compiles a new program: change only when far off
        # (a busy machine's noise stays inside the band); after the first measurement, shrink
        # at once, grow only after three short calls in a row
        self.short = self.short + 1 if t < self.target / 3 and self.size < self.cap else 0
        if first or t > 2.5 * self.target or self.short >= 3:
            self.size = max(1, min(self.cap, pow2_floor(self.target / self.step_s)))
            self.short = 0
