"""Rows as pages and the API want them: JSON columns decoded."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any


def maybe_json(value: Any) -> Any:
    """Text that looks like a JSON object or array, parsed; anything else as it is."""
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _clean_text(value: Any) -> Any:
    """Lone surrogates (valid in JSON escapes, invalid in UTF-8) become U+FFFD, recursively."""
    if isinstance(value, str):
        return (
            # Through UTF-16: a valid pair joins up, a lone half becomes U+FFFD.
            value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            if _has_surrogate(value)
            else value
        )
    if isinstance(value, list):
        return [_clean_text(v) for v in value]
    if isinstance(value, dict):
        return {_clean_text(k): _clean_text(v) for k, v in value.items()}
    return value


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def decode_json(row: Mapping[str, Any], *fields: str) -> dict[str, Any]:
    """A dict copy of ``row`` with the named JSON text columns parsed.

    A value that is not valid JSON is left as the text it is, so one bad
    cell never hides the rest of a row.
    """
    out = dict(row)
    for name in fields:
        value = out.get(name)
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):
                decoded = json.loads(value)
                # Only an escaped surrogate (\\udXXX) can smuggle one in: skip the walk otherwise.
                out[name] = _clean_text(decoded) if "\\ud" in value.lower() else decoded
    return out
