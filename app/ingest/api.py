"""``POST /v1/traces``: OTLP/HTTP trace export, protobuf or JSON, authenticated by API key.

Answers in the encoding it was sent: an ``ExportTraceServiceResponse``
(with ``partial_success`` when some spans were rejected), or for a payload
that does not decode a 400 carrying a ``google.rpc.Status`` as the OTLP
specification asks, plus the studio's usual ``detail`` in JSON.
"""

from __future__ import annotations

import json

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from app.auth.guards import requires_member
from app.ingest.decode import JSON_TYPES, OTLPError, inflate, media_type, parse_request, spans_of
from app.ingest.otlp import ingest
from app.store import Store
from app.store.live import Broker

# Exporters batch up to 512 spans with prompts in them: allow more than the API's default.
OTLP_MAX_BODY_BYTES = 16 * 1024 * 1024
PROTOBUF = "application/x-protobuf"


def _is_json(request: Request) -> bool:
    return media_type(request.headers.get("content-type", "")) in JSON_TYPES


def _error(request: Request, exc: OTLPError) -> Response:
    message = str(exc)
    if _is_json(request) or media_type(request.headers.get("content-type", "")) not in (
        PROTOBUF,
        "application/protobuf",
    ):
        body = {
            "status_code": exc.status,
            "detail": message,
            "code": code_pb2.INVALID_ARGUMENT,
            "message": message,
        }
        return Response(
            json.dumps(body).encode(), status_code=exc.status, media_type="application/json"
        )
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message)
    return Response(status.SerializeToString(), status_code=exc.status, media_type=PROTOBUF)


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
        try:
            body = inflate(await request.body(), request.headers.get("content-encoding", ""))
            export = parse_request(body, request.headers.get("content-type", ""))
        except OTLPError as exc:
            return _error(request, exc)
        spans, rejected = spans_of(export)
        result = await ingest(store, broker, spans) if spans else None
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = len(rejected)
            response.partial_success.error_message = "; ".join(rejected[:10])
        if _is_json(request):
            payload = json_format.MessageToDict(response)
            if result is not None:
                # Not part of OTLP (clients ignore unknown fields): which runs the spans fed.
                payload["agentop"] = {
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "runs": result.runs,
                }
            return Response(json.dumps(payload).encode(), media_type="application/json")
        return Response(response.SerializeToString(), media_type=PROTOBUF)
