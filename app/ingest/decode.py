"""Decode an OTLP/HTTP export (protobuf or JSON) and turn its spans into plain records.

Both encodings go through ``opentelemetry-proto``'s generated messages. A
JSON body is read with a nesting limit, checked against the schema (naming
the field whose type is wrong) and has its hex ids converted (see
``otlp_json``) before ``json_format.ParseDict``. Anything that does not
decode raises :class:`OTLPError` with a message for the 400 response.
Every value of a decoded span is normalised (``normalize``), so what is
stored is valid text and bounded numbers, whatever arrived.
"""

from __future__ import annotations

import binascii
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from app.ingest import normalize, otlp_json
from app.ingest.errors import OTLPError
from app.ingest.jsonbody import JSONBodyError, load_json

if TYPE_CHECKING:
    from app.ingest.facts import SpanFacts

PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf"}
JSON_TYPES = {"application/json"}
MAX_INFLATED_BYTES = 64 * 1024 * 1024  # a gzip bomb stops here
# Span.SpanKind as the lower-case names the pages and the API show.
SPAN_KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "unspecified",
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
STATUS_CODES = {
    Status.STATUS_CODE_UNSET: "unset",
    Status.STATUS_CODE_OK: "ok",
    Status.STATUS_CODE_ERROR: "error",
}


@dataclass
class SpanRecord:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    name: str
    start: float  # Unix seconds
    end: float
    error: bool
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)  # name, version, attributes
    span_kind: str = "internal"
    status_code: str = "unset"  # unset | ok | error, as OTLP says
    links: list[dict[str, Any]] = field(default_factory=list)
    # Filled off the writer thread by ``prepare.traces_of``: the JSON columns as stored
    # (``app.store.spans.stored_cell``) and what the span says (``facts.SpanFacts``).
    cells: dict[str, Any] | None = None
    facts: SpanFacts | None = None

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def inflate(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise OTLPError(f"unsupported Content-Encoding {encoding!r} (use gzip or none)", 415)
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise OTLPError(f"body is not valid {encoding}: {exc}") from None
    if inflater.unconsumed_tail:
        raise OTLPError("decompressed body is too large", 413)
    return data


def parse_request(
    body: bytes, content_type: str, message: type[Message] = ExportTraceServiceRequest
) -> Any:
    """``body`` as an OTLP export request of type ``message`` (traces, logs or metrics)."""
    kind = media_type(content_type)
    request = message()
    what = message.DESCRIPTOR.name
    if kind in PROTOBUF_TYPES:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeWarning) as exc:
            raise OTLPError(f"body is not a valid OTLP protobuf {what}: {exc}") from None
        return request
    if kind in JSON_TYPES:
        try:
            payload = load_json(body)
        except JSONBodyError as exc:
            raise OTLPError(str(exc)) from None
        if not isinstance(payload, dict):
            raise OTLPError(f"body must be a JSON object (an {what})")
        otlp_json.check(payload, message.DESCRIPTOR)
        try:
            json_format.ParseDict(payload, request, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError) as exc:
            # What the shape check lets through (bad base64, a duplicate field).
            raise OTLPError(f"not an OTLP {what}: {exc}") from None
        return request
    raise OTLPError(
        f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json",
        415,
    )


def any_value(value: AnyValue) -> Any:
    """An attribute value as a plain, storable JSON value (normalised, see ``normalize``)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":  # by far the most common
        return normalize.text(value.string_value)
    if kind is None:
        return None
    if kind == "double_value":
        return normalize.number(value.double_value)
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return binascii.hexlify(value.bytes_value[: normalize.MAX_TEXT // 2]).decode()
    return getattr(value, kind)  # bool, int (protobuf keeps them within 64 bits)


def attributes(kvs: Any) -> dict[str, Any]:
    # Keys are always text in protobuf: ``normalize.text`` directly (per attribute, it counts).
    return {normalize.text(kv.key, normalize.MAX_NAME): any_value(kv.value) for kv in kvs}


def scope_of(scope: InstrumentationScope) -> dict[str, Any]:
    return {
        "name": normalize.name(scope.name),
        "version": normalize.name(scope.version),
        "attributes": attributes(scope.attributes),
    }


def hex_id(raw: bytes) -> str:
    """A trace or span id as hex; all zeroes (no id) as ""."""
    return raw.hex() if any(raw) else ""


def scoped(
    groups: Iterable[Any], scopes: str, items: str
) -> Iterator[tuple[dict[str, Any], dict[str, Any], Any]]:
    """Each item of an export request (span, log record, metric) with its resource and scope.

    Every OTLP request nests the same way: resource groups of scope groups of
    items; the resource and scope are read once per group.
    """
    for group in groups:
        resource = attributes(group.resource.attributes)
        for scope_group in getattr(group, scopes):
            scope = scope_of(scope_group.scope)
            for item in getattr(scope_group, items):
                yield resource, scope, item


def _times(start_ns: int, end_ns: int) -> tuple[float, float]:
    """(start, end) in Unix seconds; a missing start is the end, a missing end the start."""
    start_ns = start_ns or end_ns or time.time_ns()
    start = start_ns / 1e9
    return start, max(start, (end_ns or start_ns) / 1e9)


def _invalid_ids(span: Span) -> str | None:
    """Which id of ``span`` is invalid (none: None)."""
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "trace_id"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "span_id"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "parent_span_id"
    return None


def spans_of(request: ExportTraceServiceRequest) -> tuple[list[SpanRecord], list[str]]:
    """The valid spans of a request, and a reason for each rejected one."""
    spans: list[SpanRecord] = []
    rejected: list[str] = []
    for resource, scope, span in scoped(request.resource_spans, "scope_spans", "spans"):
        invalid = _invalid_ids(span)
        if invalid:
            rejected.append(f"span {normalize.name(span.name, 100)!r}: invalid {invalid}")
            continue
        start, end = _times(span.start_time_unix_nano, span.end_time_unix_nano)
        spans.append(
            SpanRecord(
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=hex_id(span.parent_span_id),
                name=normalize.name(span.name),
                start=start,
                end=end,
                error=span.status.code == Status.STATUS_CODE_ERROR,
                status_message=normalize.text(span.status.message, 10_000),
                attributes=attributes(span.attributes),
                events=[
                    {
                        "name": normalize.name(e.name),
                        "at": e.time_unix_nano / 1e9,
                        "attributes": attributes(e.attributes),
                    }
                    for e in span.events
                ],
                resource=resource,
                scope=scope,
                span_kind=SPAN_KINDS.get(span.kind, "unspecified"),
                status_code=STATUS_CODES.get(span.status.code, "unset"),
                links=[
                    {
                        "trace_id": hex_id(link.trace_id),
                        "span_id": hex_id(link.span_id),
                        "attributes": attributes(link.attributes),
                    }
                    for link in span.links
                ],
            )
        )
    return spans, rejected
