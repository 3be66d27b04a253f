"""OTLP trace requests built from the real ``opentelemetry.proto`` message types, for tests.

``export(span(...), ...)`` builds an ``ExportTraceServiceRequest``; ``post``
sends it over HTTP as protobuf or as OTLP/JSON (hex ids), as exporters do;
``assert_pages_render`` checks that every list and run page still answers 200.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
T0 = 1_700_000_000_000_000_000


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(
            KeyValue(key=k, value=any_value(v)) for k, v in value.items()
        )
        return out
    return AnyValue(string_value=value)


def span(
    name: str,
    trace: int,
    span_id: int,
    parent: int = 0,
    error: str | None = None,
    **attributes: Any,
) -> Span:
    """A span of trace ``trace``; attribute names use ``__`` for dots."""
    out = Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        start_time_unix_nano=T0 + span_id * 1_000_000,
        end_time_unix_nano=T0 + span_id * 1_000_000 + 500_000,
    )
    for key, value in attributes.items():
        out.attributes.append(KeyValue(key=key.replace("__", "."), value=any_value(value)))
    if error is not None:
        out.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return out


def export(*spans: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.scope.name = "robust-test"
    scope.spans.extend(spans)
    return request


def as_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON: the protobuf JSON mapping with hex trace and span ids."""
    payload = json_format.MessageToDict(request)
    for rs in payload["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64decode(s[key]).hex()
    return payload


def post(client: Any, request: ExportTraceServiceRequest, encoding: str) -> httpx.Response:
    if encoding == "json":
        return client.post("/v1/traces", content=json.dumps(as_json(request)), headers=JSON)
    return client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)


def only_run(client: Any) -> dict[str, Any]:
    [run] = client.get("/api/runs").json()["runs"]
    return run


def assert_pages_render(client: Any) -> None:
    """Every list and each run page answer 200 whatever was ingested."""
    runs = client.get("/api/runs")
    assert runs.status_code == 200, runs.text
    for path in ("/", "/runs", "/sessions", "/api/sessions"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:2000])
    for run in runs.json()["runs"]:
        for path in (f"/runs/{run['id']}", f"/api/runs/{run['id']}"):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:2000])


def agent_and_chat(trace: int, **chat_attributes: Any) -> ExportTraceServiceRequest:
    """A trace of an agent span with one chat call under it, in session "otlp-session":
    ``trace`` sets its tokens (100 x trace in, 10 x trace out) and its model
    (model-0 or model-1); trace 3 fails. ``chat_attributes`` go on the chat span."""
    return export(
        span("agent", trace, 1, gen_ai__operation__name="invoke_agent"),
        span(
            "chat m",
            trace,
            2,
            parent=1,
            error="boom" if trace == 3 else None,
            gen_ai__operation__name="chat",
            gen_ai__request__model=f"model-{trace % 2}",
            gen_ai__usage__input_tokens=100 * trace,
            gen_ai__usage__output_tokens=10 * trace,
            session__id="otlp-session",
            **chat_attributes,
        ),
    )
