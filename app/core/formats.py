"""Numbers and times as people read them, whatever shape they arrived in (missing, NaN, huge)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

MISSING = "—"


def number(value: Any) -> float | int | None:
    """A finite int or float, or None for anything missing, non-numeric, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_ms(value: Any) -> str:
    ms = number(value)
    if ms is None:
        return MISSING
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def format_ts(value: Any) -> str:
    seconds = number(value)
    if not seconds:
        return MISSING
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # outside the years 1..9999
        return MISSING


def format_int(value: Any) -> str:
    n = number(value)
    if n is None:
        return MISSING
    return f"{n:,}"
