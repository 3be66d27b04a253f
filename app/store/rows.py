"""JSON columns of rows: encoded as they are stored, decoded as pages and the API want them."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any

import msgspec

from app.core.text import map_strings, replace_surrogates
from app.store.packed_cells import unpack


def encode_json(value: Any) -> str:
    """``value`` as the text of a JSON column (readable Unicode; anything odd as its str)."""
    return json.dumps(value, ensure_ascii=False, default=str)


_COMPACT = msgspec.json.Encoder()
_SCALARS = frozenset({str, int, bool, type(None)})


def compact_json(value: Any) -> bytes:
    """``value`` as compact JSON (UTF-8) that reads back as ``encode_json``'s text does.

    msgspec writes plain JSON values several times faster than ``json.dumps``
    (event payloads and streamed pieces are written by the thousand); what it
    would write differently (NaN and infinities as null, a datetime in ISO
    form, a non-string key) or not at all goes through ``json.dumps`` as before.
    """
    try:
        plain = _plain(value)
    except RecursionError:
        plain = False
    if plain:
        with contextlib.suppress(TypeError, ValueError, OverflowError, UnicodeError):
            return _COMPACT.encode(value)
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")).encode()


def _plain(value: Any) -> bool:
    """Whether ``value`` is made only of what JSON holds as it is (finite numbers)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return False


def maybe_json(value: Any) -> Any:
    """Text that looks like a JSON object or array, parsed; anything else as it is."""
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def json_object(value: Any) -> dict[str, Any]:
    """A JSON object column (``runs.params``…) as a dict; anything else (corrupt, NULL) as {}."""
    parsed = maybe_json(value)
    return parsed if isinstance(parsed, dict) else {}


# ``decode_json``'s default: a corrupt cell is left as the text it is.
AS_STORED: Any = object()


def decode_json(row: Mapping[str, Any], *fields: str, corrupt: Any = AS_STORED) -> dict[str, Any]:
    """A dict copy of ``row`` with the named JSON text columns parsed.

    A value that is not valid JSON (or nests too deep to parse) is left as the
    text it is, so one bad cell never hides the rest of a row; with
    ``corrupt`` given, it and any cell that is neither text nor a number
    (NULL, bytes) read as ``corrupt`` instead, for readers that promise a
    JSON value or null.
    """
    out = dict(row)
    for name in fields:
        value = out.get(name)
        if isinstance(value, bytes):
            # A packed JSON cell (ingested spans); anything else is no JSON text: None.
            value = unpack(value)
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
                # Only an escaped surrogate (\\udXXX) can smuggle one in: skip the walk otherwise.
                if "\\ud" in value.lower():
                    decoded = map_strings(decoded, replace_surrogates)
            except (ValueError, RecursionError):
                if corrupt is not AS_STORED:
                    out[name] = corrupt
                continue
            out[name] = decoded
        elif corrupt is not AS_STORED and not isinstance(value, int | float):
            out[name] = corrupt
    return out
