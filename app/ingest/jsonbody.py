"""Read an untrusted JSON request body: strict UTF-8, bounded nesting, storable text.

``json.loads`` recurses once per nesting level, so a body nested 100,000 deep
would end in ``RecursionError``; the depth is measured first, without
recursion, and refused past a limit. Invalid UTF-8 is refused with the byte
offset. A ``\\ud800`` escape is valid JSON but not text any store can hold:
lone surrogates are replaced with U+FFFD.
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.core.text import map_strings, safe_text

# Deep enough for any OTLP request (attribute values nest arrays in maps in arrays…).
MAX_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONBodyError(ValueError):
    """A body that is not JSON we accept; the message says why, for a 400."""


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether brackets outside strings nest more than ``limit`` levels deep.

    Each pass of C-speed ``replace`` removes the innermost level, so a body
    costs at most ``limit`` passes over its brackets, however deep it goes.
    """
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        inner = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if inner == brackets:  # unbalanced: json.loads will say where
            return False
        brackets = inner
        if not brackets:
            return False
    return bool(brackets.replace(b"[]", b"").replace(b"{}", b"") != brackets)


def load_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``body`` as UTF-8 JSON, or raise :class:`JSONBodyError` with a reason."""
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONBodyError(f"body is not valid UTF-8 (byte {exc.start})") from None
    if too_deep(body, max_depth):
        raise JSONBodyError(f"JSON nested deeper than {max_depth} levels")
    try:
        # Bare NaN/Infinity (not JSON, but Python's parser takes them) stay text.
        value = json.loads(decoded or "null", parse_constant=str)
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise JSONBodyError(f"body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(body):
        value = map_strings(value, safe_text)  # depth bounded by the check above
    return value
