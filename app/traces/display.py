"""Attribute values as the span detail shows them: short ones inline, long or nested ones folded.

Values arrive in any shape and size. Each is turned here, once, into text
plus a hint for the template (fold it or not, and what to say when folded),
so the template never walks or serialises untrusted data itself.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from app.web.render import pretty_json

# Longer text than this is folded under <details>.
FOLD_CHARS = 300
# A value is shown up to this many characters; the JSON API has all of it.
SHOW_CHARS = 100_000


class ValueView(TypedDict):
    text: str
    fold: bool  # show under <details>
    summary: str  # what the folded <summary> says
    clipped: int  # characters left out (0: shown whole)
    kind: str  # "text" | "json" | "scalar"


def _as_json(value: Any) -> str:
    try:
        return pretty_json(value)
    except (ValueError, RecursionError):  # a cycle or absurd depth: its repr will do
        return repr(value)


def _summary(value: Any, text: str) -> str:
    if isinstance(value, dict):
        return f"object, {len(value):,} key{'' if len(value) == 1 else 's'}"
    if isinstance(value, list):
        return f"array, {len(value):,} item{'' if len(value) == 1 else 's'}"
    first = " ".join(text[:60].split())
    return f"{first}… ({len(text):,} characters)"


def value_view(value: Any) -> ValueView:
    if isinstance(value, str):
        text, kind = value, "text"
    elif isinstance(value, dict | list):
        text, kind = _as_json(value), "json"
    elif value is None or isinstance(value, bool):
        text, kind = json.dumps(value), "scalar"
    else:
        text, kind = str(value), "scalar"
    fold = kind == "json" or len(text) > FOLD_CHARS
    clipped = max(len(text) - SHOW_CHARS, 0)
    return {
        "text": text[:SHOW_CHARS] if clipped else text,
        "fold": fold,
        "summary": _summary(value, text) if fold else "",
        "clipped": clipped,
        "kind": kind,
    }


def pairs(mapping: Any) -> list[tuple[str, ValueView]]:
    """A JSON object's items as (key, view), in stored order; any other shape as one item."""
    if isinstance(mapping, dict):
        return [(str(k), value_view(v)) for k, v in mapping.items()]
    if mapping is None:
        return []
    return [("(value)", value_view(mapping))]
