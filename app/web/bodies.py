"""Request bodies, checked once: the same msgspec Struct serves a JSON body and a form.

A JSON handler declares ``data: JSONBody[SomeBody]`` and Litestar validates it
against the Struct (a 400 naming the field), which also gives the OpenAPI
schema its shape. A page's form post, whose fields all arrive as strings,
goes through ``from_form`` with the same Struct (``app.core.validation``), so the constraints live in
one place; its errors are ``InputError`` so the page can show them beside
the form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from app.core.validation import convert

T = TypeVar("T")


def from_form(form: Mapping[str, Any], body_type: type[T], lists: Iterable[str] = ()) -> T:
    """A form post as ``body_type``: empty fields mean "not given", and the
    fields named in ``lists`` (checkboxes, repeated fields) are always lists."""
    fields: dict[str, Any] = {}
    for key, value in form.items():
        if isinstance(value, str) and not value.strip():
            continue
        fields[key] = value
    for key in lists:
        if key in fields and not isinstance(fields[key], list):
            fields[key] = [fields[key]]
    return convert(fields, body_type)
