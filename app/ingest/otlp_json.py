"""Check an OTLP/JSON payload against the protobuf schema, naming the field that is wrong.

``json_format.ParseDict`` does the conversion, but its errors on a wrong
shape are nested sentences ("Failed to parse resourceSpans field: Failed to
parse …"). This walk follows the request's message descriptors first and
stops at the first value of the wrong type with a path such as
``resourceSpans[0].scopeSpans: expected a list``.

It also does the one conversion OTLP/JSON asks on top of the protobuf JSON
mapping: trace and span ids are hex strings, not base64. Unknown keys are
skipped (the OTLP specification says receivers ignore them).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from app.ingest.errors import OTLPError

_HEX_ID_BYTES = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
_INTEGER = re.compile(r"-?\d{1,20}")
_SPECIAL_DOUBLES = {"NaN", "Infinity", "-Infinity"}
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def _repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6; ``label`` before
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """Fields by JSON name and by proto name (the JSON mapping accepts both)."""
    by_name = {f.name: f for f in descriptor.fields}
    return {**by_name, **{f.json_name: f for f in descriptor.fields}}


def _hex_to_b64(value: Any, size: int, path: str) -> str:
    if not isinstance(value, str):
        raise OTLPError(f"{path}: expected a hex string")
    if value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OTLPError(f"{path}: must be a hex string, got {value[:40]!r}") from None
    if len(raw) != size:
        raise OTLPError(f"{path}: must be {size * 2} hex digits, got {len(value)}")
    return base64.b64encode(raw).decode()


def _integer(value: Any, field: FieldDescriptor, path: str) -> None:
    if isinstance(value, bool):
        raise OTLPError(f"{path}: expected an integer, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if not isinstance(value, int):
        raise OTLPError(f"{path}: expected an integer")
    low, high = _INT_RANGES.get(field.type, (-(2**63), 2**64 - 1))
    if not low <= value <= high:
        raise OTLPError(f"{path}: integer out of range")


def _scalar(value: Any, field: FieldDescriptor, path: str) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise OTLPError(f"{path}: expected a string")
    elif kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise OTLPError(f"{path}: expected true or false")
    elif kind == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise OTLPError(f"{path}: expected a base64 string")
    elif kind in _FLOATS:
        if isinstance(value, bool) or not (
            isinstance(value, int | float) or value in _SPECIAL_DOUBLES
        ):
            raise OTLPError(f"{path}: expected a number")
    elif kind == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, str):
            if value not in field.enum_type.values_by_name:
                raise OTLPError(f"{path}: unknown value {value[:40]!r}")
        else:
            _integer(value, field, path)
    else:
        _integer(value, field, path)


def _value(value: Any, field: FieldDescriptor, path: str) -> Any:
    """``value`` checked against ``field``; returns it, converted where OTLP/JSON differs."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if not isinstance(value, dict):
            raise OTLPError(f"{path}: expected an object")
        check(value, field.message_type, path)
    elif field.type == FieldDescriptor.TYPE_BYTES and field.name in _HEX_ID_BYTES:
        return _hex_to_b64(value, _HEX_ID_BYTES[field.name], path)
    else:
        _scalar(value, field, path)
    return value


def check(payload: dict[str, Any], descriptor: Descriptor, path: str = "") -> None:
    """Check ``payload`` (a JSON object) as a ``descriptor`` message, in place.

    Raises :class:`OTLPError` naming the first field whose value has the
    wrong type. Nesting is bounded by the JSON depth limit checked before.
    """
    fields = _fields(descriptor)
    oneofs: dict[str, str] = {}
    for key, value in payload.items():
        field = fields.get(key)
        if field is None or value is None:  # unknown keys are ignored, null is the default
            continue
        where = f"{path}.{key}" if path else key
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in oneofs:
                raise OTLPError(f"{where}: only one of {oneofs[oneof.name]} and {key} may be set")
            oneofs[oneof.name] = key
        if _repeated(field):
            if not isinstance(value, list):
                raise OTLPError(f"{where}: expected a list")
            payload[key] = [_value(v, field, f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            payload[key] = _value(value, field, where)
