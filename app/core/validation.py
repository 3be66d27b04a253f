"""Decoded data (JSON, form fields, YAML) checked against a msgspec Struct, with one readable error.

Domain functions that take plain mappings (the CLI, experiments, helper
agents) convert them here, to the same Structs the JSON API validates with.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from app.core.errors import InputError

T = TypeVar("T")

_NOT_BLANK = re.compile(r"expected str matching regex '\\+S'")
_WHERE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def readable(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected `int` >= 1 - at `$.max_tokens`" as "max_tokens: expected int >= 1"."""
    text = str(exc)
    match = _WHERE.search(text)
    message = text[: match.start()] if match else text
    message = message.replace("`", "")
    message = message[:1].lower() + message[1:]
    # A pattern of one non-space character is how a Struct says "not blank".
    message = _NOT_BLANK.sub("must not be blank", message)
    if match and match.group("path"):
        return f"{match.group('path')}: {message}"
    return message


def convert(data: Any, body_type: type[T]) -> T:
    """``data`` (already decoded JSON, or form fields) as ``body_type``, or an InputError."""
    try:
        return msgspec.convert(data, body_type, strict=False)
    except msgspec.ValidationError as exc:
        raise InputError(readable(exc)) from None
