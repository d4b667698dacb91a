"""A rich progress bar over training steps with the live loss (on stderr; off in tests)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class TrainProgress:
    def __init__(self, total_steps: int, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total_steps
        self._progress: Progress | None = None
        self._last: str = ""

    def __enter__(self) -> "TrainProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[val]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total, epoch=1,
                                                 loss=float("nan"), val="")
        return self

    def advance(self, steps: int, loss: float, epoch: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, loss=loss, epoch=epoch + 1)

    def epoch_done(self, record: dict[str, Any]) -> None:
        acc = record.get("val_accuracy")
        self._last = f"val acc {acc:.4f}" if acc is not None else ""
        if self._progress is not None:
            self._progress.update(self._task, val=self._last)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
