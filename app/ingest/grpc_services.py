"""The OTLP/gRPC services: TraceService, LogsService and MetricsService ``Export``.

Each call is let in like ``POST /v1/*`` (the key of a member or an admin, in
``x-api-key`` or ``authorization: Bearer`` metadata; anyone under
``serve --no-auth``) and its request, already decoded by grpc, goes to the one
ingest pipeline (:mod:`app.ingest.pipeline`), whose response, partial success
included, is the answer. Failures use the status codes OTLP exporters act on:
UNAUTHENTICATED and PERMISSION_DENIED are not retried; UNAVAILABLE (the store
cannot write) is, after the delay in a ``google.rpc.RetryInfo``, the gRPC
twin of HTTP's ``Retry-After``.

This module imports grpc: :mod:`app.ingest.grpc_server` imports it only once
it knows the ``otel-grpc`` extra is installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from app.auth.keys import find_key, role_at_least, touch_key
from app.auth.middleware import TOUCH_EVERY_S
from app.ingest import pipeline
from app.ingest.api import OTLP_MAX_BODY_BYTES
from app.store import Store
from app.store.db import StorageUnavailable
from app.store.live import Broker

log = logging.getLogger("agentop.ingest")

R = TypeVar("R")
# (status code, details, trailing metadata) of a refused or failed call
Failure = tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]

SERVER_OPTIONS = [
    # The HTTP body limit, applied by grpc itself (to the inflated message too):
    # a larger export is answered RESOURCE_EXHAUSTED.
    ("grpc.max_receive_message_length", OTLP_MAX_BODY_BYTES),
    # grpc shares a port with any other socket that asks for it by default: a
    # second studio on a busy port must fail to start, not split the traffic.
    ("grpc.so_reuseport", 0),
]


def key_from_metadata(metadata: Iterable[tuple[str, Any]]) -> str | None:
    """The API key in ``x-api-key``, else in ``authorization: Bearer KEY``, as over HTTP."""
    values = {key.lower(): value for key, value in metadata if isinstance(value, str)}
    key = values.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, value = values.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def retry_after(seconds: int) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata telling an exporter when to retry (``google.rpc.RetryInfo``)."""
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = seconds
    return (("google.rpc.retryinfo-bin", info.SerializeToString()),)


class Ingest:
    """What every Export call shares: who may call, and how a failure is answered."""

    def __init__(self, store: Store, broker: Broker, auth: bool) -> None:
        self.store = store
        self.broker = broker
        self.auth = auth

    async def refusal(self, context: grpc.aio.ServicerContext) -> Failure | None:
        """Why this caller may not export (as a gRPC status), or None to let it in."""
        if not self.auth:
            return None
        secret = key_from_metadata(context.invocation_metadata() or ())
        if secret is None:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "send an API key in x-api-key metadata (or authorization: Bearer KEY)",
                (),
            )
        row = await self.store.read(find_key, secret)
        if row is None:
            return grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked API key", ()
        if not role_at_least(row["role"], "member"):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"exporting needs the member role (this key is {row['role']})",
                (),
            )
        now = time.time()
        if (row.get("last_used_at") or 0) < now - TOUCH_EVERY_S:
            try:
                await self.store.write(touch_key, row["id"], now)
            except StorageUnavailable:
                pass  # bookkeeping only; the export itself will say whether the store writes
        return None

    async def answer(
        self, context: grpc.aio.ServicerContext, export: Callable[[], Awaitable[R]]
    ) -> R:
        """The pipeline's response to an allowed call, or the call aborted with a clear status."""
        failure: Failure | None
        try:
            failure = await self.refusal(context)
            if failure is None:
                return await export()
        except StorageUnavailable as exc:
            failure = (grpc.StatusCode.UNAVAILABLE, str(exc), retry_after(exc.retry_after_s))
        except Exception:
            # What HTTP answers with a 500: logged here, a short status for the exporter.
            log.exception("OTLP/gRPC export failed")
            failure = (
                grpc.StatusCode.INTERNAL,
                "the studio could not record this export (its log says why)",
                (),
            )
        # Outside the try: abort raises, and that exception must reach grpc.
        code, details, trailing = failure
        await context.abort(code, details, trailing)
        raise AssertionError("unreachable: abort raises")


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def Export(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def export() -> Any:
            response, _ = await pipeline.export_traces(
                self.ingest.store, self.ingest.broker, request
            )
            return response

        return await self.ingest.answer(context, export)


class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def Export(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def export() -> Any:
            response, _ = await pipeline.export_logs(self.ingest.store, self.ingest.broker, request)
            return response

        return await self.ingest.answer(context, export)


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def Export(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def export() -> Any:
            return await pipeline.export_metrics(self.ingest.store, request)

        return await self.ingest.answer(context, export)


def build_server(store: Store, broker: Broker, auth: bool) -> grpc.aio.Server:
    """A grpc.aio server with the three OTLP services, not yet bound nor started."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    ingest = Ingest(store, broker, auth)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(ingest), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(ingest), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(ingest), server)
    return server
