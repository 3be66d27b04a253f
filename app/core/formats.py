"""Numbers and times as people read them, whatever shape they arrived in (missing, NaN, huge).

One rule per kind of number, used by every page, partial and chart (the Jinja
filters of ``app.web.render`` and the chart labels of ``app.dashboard.charts``):

- durations (``format_ms``): "840 ms", "1.29 s", "2 min 5 s", "3 h 12 min", "4 d 2 h";
- money (``format_usd``): "$0", "$0.000123", "$0.05", "$1.40", "$1,234.50";
- counts (``format_int``): "1,234,567";
- percentages (``format_pct`` for 0-100, ``format_ratio`` for 0-1): "45%", "< 1%";
- plain metric values (``format_num``): three significant digits, "0.833", "12.3", "1,290".

Never scientific notation: beyond a trillion a value is shortened ("1.2T") and
beyond what anyone can read it is "> 999T". Missing, NaN and infinite values
read as "—".
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

MISSING = "—"
# Past this a number is no longer a quantity anyone reads digit by digit.
SHORTEN_AT = 1e12
# Past this even the shortened form would need a bigger suffix than "T".
BEYOND = 999.95e12
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def number(value: Any) -> float | int | None:
    """A finite int or float, or None for anything missing, non-numeric, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _strip(text: str, keep: int = 0) -> str:
    """``1.2500`` -> ``1.25``: trailing zeros go, but ``keep`` decimals stay."""
    if "." not in text:
        return text
    whole, decimals = text.split(".")
    decimals = decimals.rstrip("0")
    decimals = decimals + "0" * (keep - len(decimals)) if len(decimals) < keep else decimals
    return f"{whole}.{decimals}" if decimals else whole


def _signed(value: float, text: str) -> str:
    return f"-{text}" if value < 0 else text


def compact(value: Any) -> str:
    """Short form for axes and huge values: "950", "1.2k", "12k", "3.4M", "1.2T", "> 999T"."""
    n = number(value)
    if n is None:
        return MISSING
    size = abs(n)
    if size >= BEYOND:
        return "< -999T" if n < 0 else "> 999T"
    for limit, suffix in _SUFFIXES:
        if size >= limit * 0.9995:  # 999,960 reads "1M", not "1000k"
            digits = 0 if size / limit >= 9.95 else 1
            return _signed(n, _strip(f"{size / limit:.{digits}f}") + suffix)
    return format_num(n)


def format_num(value: Any) -> str:
    """A plain measured value with three significant digits: "0.833", "12.3", "1,290"."""
    n = number(value)
    if n is None:
        return MISSING
    size = abs(n)
    if size >= SHORTEN_AT:
        return compact(n)
    if n == int(n):
        return f"{int(n):,}"
    digits = 0 if size >= 999.5 else min(6, 2 - math.floor(math.log10(size)))
    if digits <= 0:
        return f"{round(n):,}"
    text = _strip(f"{size:.{digits}f}")
    if text == "0":
        return "≈ 0"
    return _signed(n, text)


def format_exact(value: Any) -> str:
    """A number as set, to six decimals and without exponent: prices, "0.00001", "2.5"."""
    n = number(value)
    if n is None:
        return MISSING
    if abs(n) >= SHORTEN_AT:
        return compact(n)
    text = _strip(f"{abs(n):,.6f}")
    return "≈ 0" if text == "0" and n != 0 else _signed(n, text)


def format_int(value: Any) -> str:
    """A count with thousands separators: "1,234,567"; a float count is rounded."""
    n = number(value)
    if n is None:
        return MISSING
    if abs(n) >= SHORTEN_AT:
        return compact(n)
    return f"{round(n):,}"


def format_usd(value: Any) -> str:
    """US dollars: cents for amounts from $1, up to 4 decimals below, up to 6 below a cent."""
    usd = number(value)
    if usd is None:
        return MISSING
    size = abs(usd)
    if size == 0:
        return "$0"
    if size >= BEYOND:
        return "< -$999T" if usd < 0 else "> $999T"
    if size >= SHORTEN_AT:
        return _signed(usd, "$" + compact(size))
    if size >= 1:
        text = f"{size:,.2f}"
    elif size >= 0.01:
        text = _strip(f"{size:.4f}", keep=2)
    else:
        text = _strip(f"{size:.6f}")
        if text == "0":
            return "< -$0.000001" if usd < 0 else "< $0.000001"
    return _signed(usd, "$" + text)


def format_ms(value: Any) -> str:
    """A duration given in milliseconds: "840 ms", "1.29 s", "2 min 5 s", "3 h 12 min"."""
    ms = number(value)
    if ms is None:
        return MISSING
    size = min(abs(ms), 1e300)  # an int too big for a float would overflow below
    if size == 0:
        text = "0 ms"
    elif size < 1:
        text = "< 1 ms"
    elif size < 999.5:
        text = f"{size:.0f} ms"
    elif size < 59_995:
        text = f"{size / 1000:.2f} s"
    else:
        text = _long_duration(round(size / 1000))
    return _signed(ms, text)


def format_elapsed(seconds: float) -> str:
    """Time on a ticking clock, in whole seconds: "7 s", "2 min 05 s" (``format_ms``
    would show "7.00 s", whose decimals flicker once a second)."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


def _long_duration(seconds: int) -> str:
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {m} min" if m else f"{hours} h"
    days, h = divmod(hours, 24)
    if days < 100:
        return f"{days} d {h} h" if h else f"{days} d"
    return f"{format_int(days)} d"


def format_pct(value: Any, digits: int = 0) -> str:
    """A percentage given as 0-100: "45%", "50.0%" (``digits=1``); "< 1%" and "> 99%"
    instead of a rounded 0 or 100 that did not happen."""
    pct = number(value)
    if pct is None:
        return MISSING
    if abs(pct) >= SHORTEN_AT:
        return compact(pct) + "%"
    text = f"{pct:,.{digits}f}"
    floor = 10**-digits
    if 0 < pct < floor:
        return f"< {_strip(f'{floor:.{digits}f}')}%"
    if 100 - floor < pct < 100:
        return f"> {_strip(f'{100 - floor:.{digits}f}')}%"
    return f"{text}%"  # fixed decimals: a column of rates lines up


def format_ratio(value: Any, digits: int = 0) -> str:
    """A fraction given as 0-1, as a percentage: 0.5 -> "50%"."""
    ratio = number(value)
    if ratio is None:
        return MISSING
    return format_pct(max(-1e300, min(ratio, 1e300)) * 100, digits)  # * 100 must not overflow


# What a metric measures, by its name: the evaluators that measure time and money.
_METRIC_UNITS = {"latency_ms": "ms", "cost_usd": "usd"}


def metric_unit(metric: Any) -> str:
    """``ms``, ``usd`` or ``value`` (a plain number) for a metric's name."""
    return _METRIC_UNITS.get(metric, "value") if isinstance(metric, str) else "value"


def format_value(value: Any, unit: str) -> str:
    """A value in a unit: ``ms``, ``usd``, ``pct`` (0-100), ``count`` or ``value``."""
    if unit == "ms":
        return format_ms(value)
    if unit == "usd":
        return format_usd(value)
    if unit == "pct":
        return format_pct(value)
    if unit == "count":
        return format_int(value)
    return format_num(value)


def format_metric(value: Any, metric: Any = None) -> str:
    """A metric's value read in the metric's unit: latency_ms as a duration, cost_usd as money."""
    return format_value(value, metric_unit(metric))


def format_axis(value: Any, unit: str) -> str:
    """A chart tick: like ``format_value`` but counts and plain values shortened ("1.2k")."""
    if unit in ("count", "value"):
        return compact(value)
    return format_value(value, unit)


def format_ts(value: Any) -> str:
    seconds = number(value)
    if not seconds:
        return MISSING
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # outside the years 1..9999
        return MISSING
