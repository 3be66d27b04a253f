"""Text every page, stream, response and row can hold, whatever arrived.

JSON may carry lone surrogates (``"\\ud800"``): valid in a Python string,
but no UTF-8 response or SQLite row can encode them. NUL is a parse error in
HTML. Either would fail a page or a stream at the last moment, far from the
data that caused it, so ingest, the store's JSON decoding and rendering all
clean text here, the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REPLACEMENT = "\ufffd"


def replace_surrogates(text: str) -> str:
    """``text`` with lone surrogates as U+FFFD (a valid pair of halves joins up)."""
    try:
        text.encode("utf-8")  # the common case: nothing to do, at C speed
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8 without NUL: lone surrogates and NUL become U+FFFD."""
    text = replace_surrogates(text)
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` (decoded JSON) with ``fn`` applied to every string, keys included.

    Recursive: callers bound the nesting first (decoded JSON is at most as
    deep as the parser allowed).
    """
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {map_strings(k, fn): map_strings(v, fn) for k, v in value.items()}
    return value
