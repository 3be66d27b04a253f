"""One ingest pipeline for OTLP over HTTP and gRPC: a decoded export request in, its answer out.

``POST /v1/traces`` and ``/v1/logs`` decode the body (``decode``); the gRPC
services receive the message already decoded. Both hand it here, so the
checks, the partial-success report and the writes are the same whichever
transport carried the data. The response is built only after the batch is
committed: an acknowledged span or log record is a durable one.

Turning a decoded request into records (``prepare.traces_of``, ``logs_of``)
walks every attribute of every item, normalising it (and for spans, encodes
their JSON columns and reads them through the conventions, ``facts``): that runs on a worker thread
(``asyncio.to_thread``), so the event loop stays free for pages and live
streams. A thread and not a process: the records would have to be pickled
back to the server process, which costs about what building them does, and
the records go to the writer thread of this process anyway. The loop still
shares the GIL with the thread, but gets its turn every few milliseconds
instead of waiting for a whole request; and SQLite releases the GIL while it
runs a statement, so one request's decoding overlaps another's writing.
"""

from __future__ import annotations

import asyncio

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from app.ingest.logs import ingest_log_records, logs_of
from app.ingest.metrics import metrics_of, store_metrics
from app.ingest.otlp import ingest_spans
from app.ingest.prepare import traces_of
from app.ingest.trace_runs import IngestResult, write_and_publish
from app.store import Store
from app.store.live import Broker

# Reasons listed in a partial_success error_message, at most.
REASONS_SHOWN = 10


async def export_traces(
    store: Store, broker: Broker, request: ExportTraceServiceRequest
) -> tuple[ExportTraceServiceResponse, IngestResult | None]:
    """Record the valid spans of ``request``; report the rejected ones as a partial success."""
    spans, rejected = await asyncio.to_thread(traces_of, request)
    result = await write_and_publish(store, broker, ingest_spans, spans) if spans else None
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = len(rejected)
        response.partial_success.error_message = "; ".join(rejected[:REASONS_SHOWN])
    return response, result


async def export_logs(
    store: Store, broker: Broker, request: ExportLogsServiceRequest
) -> tuple[ExportLogsServiceResponse, IngestResult | None]:
    """Record the valid log records of ``request`` on their spans (GenAI events become messages)."""
    records, rejected = await asyncio.to_thread(logs_of, request)
    result = (
        await write_and_publish(store, broker, ingest_log_records, records) if records else None
    )
    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = len(rejected)
        response.partial_success.error_message = "; ".join(rejected[:REASONS_SHOWN])
    return response, result


async def export_metrics(
    store: Store, request: ExportMetricsServiceRequest
) -> ExportMetricsServiceResponse:
    """Store the GenAI client metrics' data points; report every other point as rejected."""
    points, rejected, reason = await asyncio.to_thread(metrics_of, request)
    if points:
        await store.write(store_metrics, points)
    response = ExportMetricsServiceResponse()
    if rejected:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = reason
    return response
