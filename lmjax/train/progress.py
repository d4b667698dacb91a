"""Watching a run: a rich progress bar on a terminal, plain lines everywhere else.

* The bar (stderr, when it is a terminal and ``train.progress``): step, loss ("-" until the
  first loss is known), the last validation accuracy, elapsed time and an ETA that honours
  ``train.time_budget_s`` (the bar's total becomes the steps the budget allows, when that is
  fewer than the epochs').
* Plain lines, through Python logging on the ``lmjax.train`` logger, every
  ``train.log_every_s`` seconds (step, epoch, loss, tokens/s, elapsed, ETA; from a small
  thread, so compiling, evaluating or checkpointing do not hold them up) and at epoch ends (the
  last one, and others when a line is due). Under ``experiments.run`` Hydra's job logging sends them to the console
  (stdout) and to ``run.log`` in the run dir; so ``> log``, ``nohup``, ``tee`` and SLURM
  output show a run's progress while it trains. While the bar is on screen, the lines are kept
  off terminal handlers (the bar shows the same) and still go to run.log.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn)
from rich.text import Text

from lmjax.fmt import num

log = logging.getLogger("lmjax.train")
_EPOCH_LINE = (("train_loss", "train loss"), ("val_loss", "val loss"), ("val_accuracy", "val acc"),
               ("val_bits_per_char", "val bits/char"), ("val_perplexity", "val perplexity"),
               ("val_carried_bits_per_char", "carried val bits/char"),
               ("val_carried_perplexity", "carried val perplexity"))


def clock(seconds: float | None) -> str:
    """Seconds -> "0:01:05" ("-:--:--" when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    s = int(round(max(seconds, 0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _loss(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else num(x)


class _Eta(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(clock(task.fields.get("eta")), style="progress.remaining")


class _OffTerminals(logging.Filter):
    """Keeps this module's lines off terminal handlers while the bar is drawn there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(log.name)


class TrainProgress:
    """``total_steps``: the run's steps (all epochs); ``start``: steps done before (a resumed
    run); ``budget_s`` / ``train_s0``: the time budget and the training seconds spent before."""

    def __init__(self, total_steps: int, enabled: bool = True, *, start: int = 0,
                 epochs: int = 0, steps_per_epoch: int = 0, tokens_per_step: int = 0,
                 log_every_s: float = 0.0, budget_s: float = 0.0, train_s0: float = 0.0,
                 loss: float | None = None, console: Console | None = None):
        self.enabled = enabled and (console is not None or sys.stderr.isatty())
        self.console = console
        self.total, self.done, self.start = total_steps, start, start
        self.epochs, self.spe, self.tokens = epochs, steps_per_epoch, tokens_per_step
        self.every, self.budget, self.train_s0 = log_every_s, budget_s, train_s0
        self.loss, self.epoch = loss, (start // steps_per_epoch if steps_per_epoch else 0)
        self.train_s = train_s0
        self.t0 = time.perf_counter()
        self.last_line = self.t0
        self._progress: Progress | None = None
        self._filtered: list[logging.Handler] = []
        self._filter = _OffTerminals()
        self._last: str = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # --- the numbers ---------------------------------------------------------------------------
    def rate(self) -> float | None:
        """Steps per second of training in this process (None until some were timed)."""
        spent = self.train_s - self.train_s0
        return (self.done - self.start) / spent if spent > 0 and self.done > self.start else None

    def planned(self) -> int:
        """The steps this run will end at: all epochs', or fewer when the budget ends it first."""
        rate = self.rate()
        if not self.budget or rate is None:
            return self.total
        return min(self.total, self.done + int(rate * max(self.budget - self.train_s, 0.0)))

    def eta(self) -> float | None:
        rate = self.rate()
        left = None if rate is None else (self.planned() - self.done) / rate
        if self.budget:
            budget_left = max(self.budget - self.train_s, 0.0)
            left = budget_left if left is None else min(left, budget_left)
        return left

    # --- updates -------------------------------------------------------------------------------
    def __enter__(self) -> "TrainProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[val]}"), TimeElapsedColumn(), _Eta(),
                console=self.console or Console(stderr=True), refresh_per_second=4,
                transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.planned(), completed=self.done, epoch=self.epoch + 1,
                loss=_loss(self.loss), val="", eta=self.eta())
            for h in logging.getLogger().handlers + log.handlers:
                stream = getattr(h, "stream", None)
                if stream is not None and getattr(stream, "isatty", lambda: False)():
                    h.addFilter(self._filter)
                    self._filtered.append(h)
        if self.every:
            self._ticker = threading.Thread(target=self._tick, name="lmjax-progress", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        """A line whenever ``every`` seconds (less a little for the thread's wake-up jitter)
        passed without one."""
        every = self.every - min(0.25, self.every / 20)
        while not self._stop.wait(max(0.02, every - (time.perf_counter() - self.last_line))):
            if time.perf_counter() - self.last_line >= every:
                self.line()

    def advance(self, steps: int, loss: float | None, epoch: int,
                train_s: float | None = None) -> None:
        """``steps`` more done, the epoch's running ``loss`` so far, ``train_s``: training
        seconds of the run so far (None: this object's wall clock)."""
        with self._lock:
            self._advance(steps, loss, epoch, train_s)

    def _advance(self, steps: int, loss: float | None, epoch: int,
                 train_s: float | None) -> None:
        now = time.perf_counter()
        self.done += steps
        self.loss = loss if loss is not None and math.isfinite(loss) else self.loss
        self.epoch = epoch
        self.train_s = train_s if train_s is not None else self.train_s0 + now - self.t0
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, total=self.planned(),
                                  loss=_loss(self.loss), epoch=epoch + 1, eta=self.eta())

    def line(self) -> None:
        """One plain progress line (logging)."""
        with self._lock:
            self._line()

    def _line(self) -> None:
        self.last_line = time.perf_counter()
        rate = self.rate()
        tok = f"{rate * self.tokens:,.0f} tokens/s" if rate and self.tokens else "- tokens/s"
        of = f"/{self.epochs}" if self.epochs else ""
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        log.info("step %s/%s%s  epoch %d%s  loss %s  %s  elapsed %s  eta %s", f"{self.done:,}",
                 f"{self.planned():,}", pct, self.epoch + 1, of, _loss(self.loss), tok,
                 clock(self.last_line - self.t0), clock(self.eta()))

    def epoch_done(self, record: dict[str, Any]) -> None:
        acc = record.get("val_accuracy")
        self._last = f"val acc {acc:.4f}" if acc is not None else ""
        if self._progress is not None:
            self._progress.update(self._task, val=self._last)
        now, epoch = time.perf_counter(), record.get("epoch", self.epoch + 1)
        if self.every and (now - self.last_line >= self.every or epoch == self.epochs):
            parts = [f"{name} {num(record[k])}" for k, name in _EPOCH_LINE
                     if record.get(k) is not None]
            with self._lock:
                self.last_line = now
                log.info("epoch %d%s done: %s", epoch,
                         f"/{self.epochs}" if self.epochs else "", ", ".join(parts))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        for h in self._filtered:
            h.removeFilter(self._filter)
        self._filtered.clear()
        if self._progress is not None:
            self._progress.__exit__(*exc)
