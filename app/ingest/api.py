"""``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``: OTLP/HTTP export, protobuf or JSON.

``GET /api/otlp/metrics`` reads back the GenAI metrics stored, summed.

Authenticated by API key like the rest of the API. Each answers in the
encoding it was sent: the export's response message (with
``partial_success`` when some items were rejected), or for a payload that
does not decode a 400 carrying a ``google.rpc.Status``, as the OTLP
specification asks (``app.core.rpc_status``; 401, 404 and 415 answers take
the same form through the app's error handlers). The decoded request goes
through the one pipeline the gRPC services use too (``pipeline``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import Message
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.auth.guards import requires_member
from app.core.rpc_status import PROTOBUF
from app.ingest.decode import JSON_TYPES, inflate, media_type, parse_request
from app.ingest.metrics import metric_summary
from app.ingest.pipeline import export_logs, export_metrics, export_traces
from app.ingest.trace_runs import IngestResult
from app.store import Store
from app.store.live import Broker

# Exporters batch up to 512 spans with prompts in them: allow more than the API's default.
OTLP_MAX_BODY_BYTES = 16 * 1024 * 1024


def _is_json(request: Request) -> bool:
    return media_type(request.headers.get("content-type", "")) in JSON_TYPES


def _parse(body: bytes, encoding: str, content_type: str, message: type[Message]) -> Any:
    return parse_request(inflate(body, encoding), content_type, message)


async def _decode(request: Request, message: type[Message]) -> Any:
    """The request's export message; a body that does not decode raises :class:`OTLPError`,
    which the app answers as a ``google.rpc.Status`` (``app.web.errors``).

    Inflating and parsing (up to 64 MiB inflated) run on a worker thread, not on
    the event loop, which keeps its turns at serving pages and live streams.
    """
    body = await request.body()
    headers = request.headers
    return await asyncio.to_thread(
        _parse,
        body,
        headers.get("content-encoding", ""),
        headers.get("content-type", ""),
        message,
    )


def _answer(request: Request, response: Message, result: IngestResult | None = None) -> Response:
    if not _is_json(request):
        return Response(response.SerializeToString(), media_type=PROTOBUF)
    payload = json_format.MessageToDict(response)
    if result is not None:
        # Not part of OTLP (clients ignore unknown fields): which runs the data fed.
        payload["agentop"] = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "runs": result.runs,
        }
    return Response(json.dumps(payload).encode(), media_type="application/json")


class OTLPController(Controller):
    path = "/v1"
    tags = ["ingest"]

    @post(
        "/traces",
        summary="OTLP/HTTP trace export (protobuf or JSON); spans become runs",
        guards=[requires_member],
        status_code=200,
        request_max_body_size=OTLP_MAX_BODY_BYTES,
    )
    async def traces(
        self, request: Request, store: NamedDependency[Store], broker: NamedDependency[Broker]
    ) -> Response:
        export = await _decode(request, ExportTraceServiceRequest)
        response, result = await export_traces(store, broker, export)
        return _answer(request, response, result)

    @post(
        "/logs",
        summary="OTLP/HTTP log export; GenAI events become messages, every record is kept on its span",
        guards=[requires_member],
        status_code=200,
        request_max_body_size=OTLP_MAX_BODY_BYTES,
    )
    async def logs(
        self, request: Request, store: NamedDependency[Store], broker: NamedDependency[Broker]
    ) -> Response:
        export = await _decode(request, ExportLogsServiceRequest)
        response, result = await export_logs(store, broker, export)
        return _answer(request, response, result)

    @post(
        "/metrics",
        summary="OTLP/HTTP metric export; GenAI metrics (gen_ai.*) are stored, others reported as rejected",
        guards=[requires_member],
        status_code=200,
        request_max_body_size=OTLP_MAX_BODY_BYTES,
    )
    async def metrics(self, request: Request, store: NamedDependency[Store]) -> Response:
        export = await _decode(request, ExportMetricsServiceRequest)
        return _answer(request, await export_metrics(store, export))


class GenAIMetricPoint(msgspec.Struct):
    """One metric over the window: data points and the sum of their counts and values."""

    name: str
    unit: str | None
    model: str | None
    token_type: str | None
    points: int
    count: int | None
    total: float | None


class GenAIMetrics(msgspec.Struct):
    since: float
    metrics: list[GenAIMetricPoint]


class GenAIMetricsAPI(Controller):
    path = "/api/otlp"
    tags = ["ingest"]

    @get(
        "/metrics",
        summary="GenAI metrics received over OTLP, summed per metric, model and token type",
    )
    async def metrics(
        self,
        store: NamedDependency[Store],
        hours: int = Parameter(default=24, ge=1, le=24 * 90, description="the window, in hours"),
    ) -> GenAIMetrics:
        since = time.time() - hours * 3600
        rows = await store.read(metric_summary, since)
        return GenAIMetrics(
            since=since, metrics=[msgspec.convert(r, GenAIMetricPoint) for r in rows]
        )
