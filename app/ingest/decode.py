"""Decode an OTLP/HTTP trace export (protobuf or JSON) into plain span records.

Both encodings go through ``opentelemetry-proto``'s generated messages. OTLP
JSON differs from the canonical protobuf JSON mapping in one place: trace and
span ids are hex strings, not base64, so they are converted before
``json_format.ParseDict``. Anything that does not decode raises
:class:`OTLPError` with a message for the 400 response.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf"}
JSON_TYPES = {"application/json"}
MAX_INFLATED_BYTES = 64 * 1024 * 1024  # a gzip bomb stops here


class OTLPError(ValueError):
    """A payload that cannot be decoded; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
    scope: str = ""

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


def _hex_to_b64(value: Any, size: int, what: str) -> Any:
    if not isinstance(value, str) or value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OTLPError(f"{what} must be a hex string, got {value[:40]!r}") from None
    if len(raw) != size:
        raise OTLPError(f"{what} must be {size * 2} hex digits, got {len(value)}")
    return base64.b64encode(raw).decode()


def _hex_ids(payload: dict[str, Any]) -> dict[str, Any]:
    """OTLP JSON carries ids as hex; the protobuf JSON mapping expects base64."""
    for resource_spans in payload.get("resourceSpans") or payload.get("resource_spans") or []:
        if not isinstance(resource_spans, dict):
            raise OTLPError("resourceSpans must be a list of objects")
        for scope_spans in (
            resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or []
        ):
            if not isinstance(scope_spans, dict):
                raise OTLPError("scopeSpans must be a list of objects")
            for span in scope_spans.get("spans") or []:
                if not isinstance(span, dict):
                    raise OTLPError("spans must be a list of objects")
                for key, size in (
                    ("traceId", 16),
                    ("trace_id", 16),
                    ("spanId", 8),
                    ("span_id", 8),
                    ("parentSpanId", 8),
                    ("parent_span_id", 8),
                ):
                    if key in span:
                        span[key] = _hex_to_b64(span[key], size, key)
                for link in span.get("links") or []:
                    if isinstance(link, dict):
                        for key, size in (("traceId", 16), ("spanId", 8)):
                            if key in link:
                                link[key] = _hex_to_b64(link[key], size, f"link {key}")
    return payload


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    kind = media_type(content_type)
    request = ExportTraceServiceRequest()
    if kind in PROTOBUF_TYPES:
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeWarning) as exc:
            raise OTLPError(
                f"body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}"
            ) from None
        return request
    if kind in JSON_TYPES:
        try:
            payload = json.loads(body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OTLPError(f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise OTLPError("body must be a JSON object (an ExportTraceServiceRequest)")
        try:
            json_format.ParseDict(_hex_ids(payload), request, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise OTLPError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
        return request
    raise OTLPError(
        f"unsupported Content-Type {content_type!r}: send application/x-protobuf or application/json",
        415,
    )


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return binascii.hexlify(value.bytes_value).decode()
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def spans_of(request: ExportTraceServiceRequest) -> tuple[list[SpanRecord], list[str]]:
    """The valid spans of a request, and a reason for each rejected one."""
    spans: list[SpanRecord] = []
    rejected: list[str] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or not any(span.trace_id):
                    rejected.append(f"span {span.name!r}: invalid trace_id")
                    continue
                if len(span.span_id) != 8 or not any(span.span_id):
                    rejected.append(f"span {span.name!r}: invalid span_id")
                    continue
                start = span.start_time_unix_nano / 1e9
                end = (span.end_time_unix_nano or span.start_time_unix_nano) / 1e9
                spans.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex()
                        if any(span.parent_span_id)
                        else "",
                        name=span.name,
                        start=start,
                        end=max(start, end),
                        error=span.status.code == Status.STATUS_CODE_ERROR,
                        status_message=span.status.message,
                        attributes=attributes(span.attributes),
                        events=[
                            {
                                "name": e.name,
                                "at": e.time_unix_nano / 1e9,
                                "attributes": attributes(e.attributes),
                            }
                            for e in span.events
                        ],
                        resource=resource,
                        scope=scope,
                    )
                )
    return spans, rejected
