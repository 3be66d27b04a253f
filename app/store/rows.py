"""Rows as pages and the API want them: JSON columns decoded."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from app.core.text import map_strings, replace_surrogates


def maybe_json(value: Any) -> Any:
    """Text that looks like a JSON object or array, parsed; anything else as it is."""
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


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
                out[name] = (
                    map_strings(decoded, replace_surrogates) if "\\ud" in value.lower() else decoded
                )
    return out
