"""Bring ingested values within what the store and the pages can hold.

Like Sentry's relay, ingest normalises every value once, as it arrives, so
nothing downstream has to distrust a payload's shape: text is valid UTF-8
without NUL and of bounded length, numbers are finite and within bounds
(64-bit extremes would overflow the dashboard's sums), and attribute values
of any OTLP kind become plain JSON values.
"""

from __future__ import annotations

import math
import re
from typing import Any

from app.core.text import REPLACEMENT, safe_text

# A million million tokens is far beyond any real run; summing ~9 million of
# them still fits in SQLite's 64-bit integers.
MAX_TOKENS = 10**12
# One attribute value (a whole conversation in gen_ai.input.messages can be long).
MAX_TEXT = 1_000_000
# Names, keys, models, ids: anything shown on one line.
MAX_NAME = 1_000

_INT_TEXT = re.compile(r"\s*[+-]?\d{1,30}\s*")
TRUNCATED = "…"


def text(value: str, limit: int = MAX_TEXT) -> str:
    """``value`` as storable text: lone surrogates and NUL replaced, cut at ``limit`` chars."""
    if len(value) > limit:
        value = value[:limit] + TRUNCATED
    if value.isascii():  # most values (ids, names, keys), at C speed: no surrogate can be there
        return value.replace("\x00", REPLACEMENT) if "\x00" in value else value
    return safe_text(value)


def name(value: Any, limit: int = MAX_NAME) -> str:
    """A one-line name (span, model, tool) as text; anything not text is shown as JSON-ish str."""
    return text(value if isinstance(value, str) else str(value), limit)


def number(value: float) -> float | str:
    """A double as JSON can hold it: NaN and infinities are kept as their names."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def count(value: Any, upper: int = MAX_TOKENS) -> int | None:
    """A count (tokens) from whatever an attribute holds; None when it says nothing usable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        if _INT_TEXT.fullmatch(value):
            value = int(value)
        else:
            try:
                value = float(value[:40])
            except ValueError:
                return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if not isinstance(value, int):
        return None  # arrays, maps, bytes: not a count
    return min(max(value, 0), upper)
