"""SIGTERM and Ctrl-C as requests to stop at the next safe point of training.

The training loop (this floor) uses it; ``lmjax.cli.StopSignals`` is the same class.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """Turn SIGTERM and SIGINT into a request to stop at the next safe point.

    Inside ``with StopSignals() as stop:`` the first SIGTERM or Ctrl-C only sets ``stop.signum``;
    the training loop checks it between jitted chunks, saves a checkpoint and exits cleanly. A
    second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread (where Python cannot
    install handlers) nothing is installed and ``signum`` stays None.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()
