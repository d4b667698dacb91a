"""Fault injection for the robustness tests: die or signal at a named point of a run.

``LMJAX_TEST_KILL_AT=point[:n]`` makes the process SIGKILL itself the n-th time (default 1st) it
reaches ``point`` in this process; ``LMJAX_TEST_SIGNAL_AT=point[:n[:TERM|INT]]`` sends SIGTERM
(or SIGINT) instead, which the loop answers by checkpointing and exiting. Points:

  start        after the run dir is checked and the state built or restored, before training
  chunk        after a jitted chunk of steps is dispatched
  logged       after an epoch's line is appended to metrics.jsonl, before its checkpoint
  ckpt_begin   before a checkpoint is written
  ckpt_write   inside a checkpoint write: all files written to the tmp dir, not yet renamed
  ckpt_done    after a checkpoint is written
  summary      after samples.txt, before summary.json

Unset (always, outside tests) these cost one dict lookup per point.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter[str] = Counter()


def _parse(var: str) -> tuple[str, int, str] | None:
    spec = os.environ.get(var)
    if not spec:
        return None
    parts = spec.split(":")
    return parts[0], int(parts[1]) if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else "TERM"


def armed(point: str) -> bool:
    """Is a hook set for ``point``?"""
    return any((p := _parse(v)) is not None and p[0] == point
               for v in ("LMJAX_TEST_KILL_AT", "LMJAX_TEST_SIGNAL_AT"))


def reached(point: str) -> None:
    """Called by the loop at ``point``: kill or signal this process if a test asked for it."""
    if "LMJAX_TEST_KILL_AT" not in os.environ and "LMJAX_TEST_SIGNAL_AT" not in os.environ:
        return
    _seen[point] += 1
    kill = _parse("LMJAX_TEST_KILL_AT")
    if kill and kill[0] == point and kill[1] == _seen[point]:
        os.kill(os.getpid(), signal.SIGKILL)
    sig = _parse("LMJAX_TEST_SIGNAL_AT")
    if sig and sig[0] == point and sig[1] == _seen[point]:
        os.kill(os.getpid(), signal.SIGINT if sig[2] == "INT" else signal.SIGTERM)
