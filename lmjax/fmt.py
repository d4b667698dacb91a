"""Readable numbers for everything lmjax prints or writes for people (summaries, tables, pages).

A perplexity of a diverged run can be 1e300; printed with ``:.4f`` it is a 300-digit number that
runs off a terminal or a table. :func:`num` keeps ordinary values as fixed-point and switches to
scientific notation for very large or very small ones.
"""

from __future__ import annotations

import math
from typing import Any


def num(x: Any, digits: int = 4) -> str:
    """``digits`` decimals for ordinary magnitudes; ``1.0e+304`` style outside [1e-3, 1e6).

    Integers print as integers (with thousands separators past 1e6 they switch to scientific
    too); NaN/None print as ``n/a``; infinities as ``inf``/``-inf``."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) < 10**9 else f"{x:.{max(1, digits - 3)}e}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and not (1e-3 <= abs(v) < 1e6):
        return f"{v:.{max(1, digits - 3)}e}"
    return f"{v:.{digits}f}"
