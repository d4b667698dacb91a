"""Wall time split into start-up (set-up and compiling) and steady training, per run, from what
the training loop records in summary.json (``first_chunk_seconds``, ``first_chunk_steps``,
``steps``, ``train_seconds``, ``wall_seconds``, ``tokens_per_second``) and metrics.jsonl (the
cumulative ``train_seconds`` at each epoch's ``step``).

The jobs of a sweep share one process, so the first job of each shape compiles the train step and
the next seeds reuse it: its wall time and ``train_seconds`` are outliers of its group. These
parts are not.
"""

from __future__ import annotations

import math
from typing import Any


def number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def timing_split(summary: dict, rows: list[dict]) -> dict[str, float]:
    """Wall time's two parts that matter when comparing runs, in seconds:

    * ``train_steady_seconds``: the train steps at their steady pace, ``steps x r``, where r is
      the time per step after the first epoch (from metrics.jsonl's cumulative
      ``train_seconds``), so compiling the step is not in it;
    * ``tokens_per_second``: the summary's tokens over that steady time instead of
      ``train_seconds`` (which has the compilation in it);
    * ``startup_seconds``: set-up (data, model) and compilation: ``first_chunk_seconds`` (from
      the start until the first jitted chunk of ``first_chunk_steps`` steps finished) less those
      steps at the steady pace.

    With one logged epoch r can only be bounded from above (by ``train_seconds / steps``, and by
    the time after the first chunk per step); the smaller bound is used. Keys that cannot be
    computed are left out (e.g. ``train.parallel_seeds`` runs record no first chunk)."""
    steps = number(summary.get("steps"))
    pts = [(number(r.get("step")), number(r.get("train_seconds"))) for r in rows]
    pts = [(a, b) for a, b in pts if a is not None and b is not None]
    rate = None
    if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
        rate = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    elif steps:
        fc, fcs = number(summary.get("first_chunk_seconds")), summary.get("first_chunk_steps")
        wall, train = number(summary.get("wall_seconds")), number(summary.get("train_seconds"))
        bounds = [train / steps] if train is not None else []
        if fc is not None and wall is not None and isinstance(fcs, int) and steps > fcs:
            bounds.append((wall - fc) / (steps - fcs))
        rate = min(bounds) if bounds else None
    out: dict[str, float] = {}
    if rate is None or not math.isfinite(rate) or rate < 0:
        return out
    if steps is not None:
        out["train_steady_seconds"] = steps * rate
        tps = number(summary.get("tokens_per_second"))
        train = number(summary.get("train_seconds"))
        if tps is not None and train is not None and steps * rate > 0:
            out["tokens_per_second"] = tps * train / (steps * rate)  # the same tokens, steady
    fc, fcs = number(summary.get("first_chunk_seconds")), number(summary.get("first_chunk_steps"))
    if fc is not None and fcs is not None:
        out["startup_seconds"] = max(0.0, fc - fcs * rate)
    return out
