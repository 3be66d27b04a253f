"""The OTLP load of the ingest benchmarks: requests as an SDK's batch exporter sends them.

``build_request(client, index, traces, spans)`` builds one
``ExportTraceServiceRequest`` of ``traces`` traces of ``spans`` spans each (an
agent root span, LLM spans with GenAI attributes, input/output messages and
token usage, tool spans), deterministic for its arguments. ``CLIENTS`` sends
serialised requests over OTLP/HTTP (httpx) or OTLP/gRPC (a channel calling
``TraceService/Export``) with an API key; each client gives back ``None`` or
why a request failed. Used by ``bench/ingest.py`` and ``bench/runs_list.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# A client sends bodies (serialised requests), gets back None or why it failed.
Send = Callable[[bytes], "str | None"]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_request(client: int, index: int, traces: int, spans: int) -> ExportTraceServiceRequest:
    """``traces`` agent traces of ``spans`` spans: root + alternating LLM and tool spans."""
    now = time.time_ns()
    out = []
    for t in range(traces):
        trace_id = os.urandom(16)
        root_id = os.urandom(8)
        children = []
        history = [{"role": "user", "parts": [{"type": "text", "content": f"question {t}"}]}]
        for s in range(spans - 1):
            start = now + s * 1_000_000
            span = Span(
                trace_id=trace_id,
                span_id=os.urandom(8),
                parent_span_id=root_id,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 900_000,
            )
            if s % 2 == 0:
                span.name = "chat mistral-small-latest"
                reply = [{"role": "assistant", "parts": [{"type": "text", "content": f"step {s}"}]}]
                span.attributes.extend(
                    [
                        _kv("gen_ai.operation.name", "chat"),
                        _kv("gen_ai.provider.name", "mistral_ai"),
                        _kv("gen_ai.request.model", "mistral-small-latest"),
                        _kv("gen_ai.usage.input_tokens", 120 + s),
                        _kv("gen_ai.usage.output_tokens", 30),
                        _kv("gen_ai.input.messages", json.dumps(history)),
                        _kv("gen_ai.output.messages", json.dumps(reply)),
                    ]
                )
                history = history + reply
            else:
                span.name = "execute_tool search"
                span.attributes.extend(
                    [
                        _kv("gen_ai.operation.name", "execute_tool"),
                        _kv("gen_ai.tool.name", "search"),
                        _kv("gen_ai.tool.call.id", f"c{client}x{index}x{t}x{s}"),
                        _kv("gen_ai.tool.call.arguments", '{"q": "otlp"}'),
                        _kv("gen_ai.tool.call.result", "three results"),
                    ]
                )
            children.append(span)
        root = Span(
            trace_id=trace_id,
            span_id=root_id,
            name="invoke_agent bench",
            start_time_unix_nano=now,
            end_time_unix_nano=now + spans * 1_000_000,
        )
        root.attributes.extend(
            [_kv("gen_ai.operation.name", "invoke_agent"), _kv("output.value", "done")]
        )
        out.extend(children + [root])
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=out)])
    resource.resource.attributes.append(_kv("service.name", "bench-agent"))
    return ExportTraceServiceRequest(resource_spans=[resource])


@contextmanager
def http_client(url: str, target: str, key: str) -> Iterator[Send]:
    headers = {"Content-Type": "application/x-protobuf", "X-API-Key": key}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:

        def send(body: bytes) -> str | None:
            r = c.post("/v1/traces", content=body)
            if r.status_code != 200:
                return f"{r.status_code}: {r.text[:200]}"
            rejected = ExportTraceServiceResponse.FromString(r.content).partial_success
            return f"{rejected.rejected_spans} spans rejected" if rejected.rejected_spans else None

        yield send


@contextmanager
def grpc_client(url: str, target: str, key: str) -> Iterator[Send]:
    with grpc.insecure_channel(target) as channel:
        # No request serializer: the body goes as it is, the same bytes as over HTTP.
        export = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        metadata = (("x-api-key", key),)

        def send(body: bytes) -> str | None:
            try:
                response = export(body, metadata=metadata, timeout=60)
            except grpc.RpcError as exc:
                return f"{exc.code().name}: {exc.details()}"
            rejected = response.partial_success.rejected_spans
            return f"{rejected} spans rejected" if rejected else None

        yield send


CLIENTS = {"http": http_client, "grpc": grpc_client}
