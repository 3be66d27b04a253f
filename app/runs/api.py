"""JSON API under /api: health, start runs, list and read them, follow their events."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter
from litestar.response import ServerSentEvent

from app.auth.guards import requires_member
from app.runs.context import RunDetail, RunList, run_detail_or_404, run_list
from app.runs.filters import parse_filters
from app.runs.input import RunCreate, to_run_input
from app.runs.runner import Runner
from app.runs.source import run_source
from app.runs.stream import resume_point, run_event_stream
from app.store import Store
from app.store.backend import DATABASE_ERRORS
from app.store.db import StorageUnavailable, answers
from app.store.live import Broker
from app.web.deps import existing_run
from app.web.params import MAX_ID


class RunCreated(msgspec.Struct):
    run_id: str
    status: str


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """What every error answer carries: the status and a message saying why; a
    body that fails validation also lists each field (``key``) and its ``message``."""

    status_code: int
    detail: str
    extra: list[dict[str, str]] | None = None


class Health(msgspec.Struct):
    status: str


class StorageDegraded(msgspec.Struct):
    """``status`` is ``degraded``; ``storage`` says why the store cannot write, since when."""

    status: str
    storage: str | None
    since: float | None


READY_TIMEOUT_S = 3.0
NOT_READY: tuple[type[Exception], ...] = (StorageUnavailable, TimeoutError, *DATABASE_ERRORS)

# Documented refusals of POST /api/runs (each answer carries Retry-After).
RUN_REFUSALS = {
    400: ResponseSpec(ErrorBody, description="The body is invalid: the message says which field"),
    429: ResponseSpec(ErrorBody, description="Too many runs are queued; retry after Retry-After s"),
    503: ResponseSpec(ErrorBody, description="The database cannot be written (e.g. disk full)"),
}


class Ready(msgspec.Struct):
    status: str


class HealthController(Controller):
    path = "/api"

    @get(
        "/health", summary="Liveness and storage check (no auth); 503 while the store cannot write"
    )
    async def health(self, store: NamedDependency[Store]) -> Response[Health | StorageDegraded]:
        health = store.health
        if health.ok:
            return Response(Health(status="ok"))
        # Not ready for writes: a load balancer or orchestrator should send traffic elsewhere.
        return Response(
            StorageDegraded(status="degraded", storage=health.cause, since=health.since),
            status_code=503,
            headers={"Retry-After": str(StorageUnavailable.retry_after_s)},
        )

    @get(
        "/ready",
        summary="Readiness (no auth): 200 once the database answers a query, else 503",
        responses={503: ResponseSpec(ErrorBody, description="The database does not answer")},
    )
    async def ready(self, store: NamedDependency[Store]) -> Response[Ready | ErrorBody]:
        # A read, not the write health: a replica whose PostgreSQL is unreachable must leave
        # the load balancer, and one that can read serves pages while writes recover.
        try:
            await asyncio.wait_for(store.read(answers), READY_TIMEOUT_S)
        except NOT_READY as exc:
            detail = getattr(exc, "cause", None) or "the database does not answer"
            return Response(
                ErrorBody(status_code=503, detail=f"not ready: {detail}"),
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return Response(Ready(status="ready"))


class RunsAPI(Controller):
    path = "/api/runs"
    tags = ["runs"]

    @post(
        "/",
        summary="Start a run in the background",
        status_code=201,
        guards=[requires_member],
        responses=RUN_REFUSALS,
    )
    async def create(
        self, request: Request, data: JSONBody[RunCreate], runner: NamedDependency[Runner]
    ) -> RunCreated:
        run_input = to_run_input(data, runner.config, runner.tool_names)
        run = await runner.start(run_input, source=run_source(request))
        return RunCreated(run_id=run["id"], status=run["status"])

    @get("/", summary="List runs, newest first; filter by status, model, session, text, dates")
    async def index(
        self,
        store: NamedDependency[Store],
        limit: int = Parameter(default=50, ge=1, le=500),
        offset: int = Parameter(default=0, ge=0, le=10**12),
        q: str | None = Parameter(default=None, description="words in the prompt or answer"),
        status: str | None = Parameter(default=None),
        model: str | None = Parameter(default=None),
        session: str | None = Parameter(default=None),
        date_from: Annotated[
            str | None, QueryParameter(name="from", description="YYYY-MM-DD (UTC)")
        ] = None,
        date_to: Annotated[
            str | None, QueryParameter(name="to", description="YYYY-MM-DD (UTC), inclusive")
        ] = None,
    ) -> RunList:
        filters = parse_filters(
            {
                "q": q,
                "status": status,
                "model": model,
                "session": session,
                "from": date_from,
                "to": date_to,
            }
        )
        return await run_list(store, filters, limit, offset)

    @get("/{run_id:str}", summary="A run with its messages, tool calls and spans")
    async def show(self, run_id: FromPath[str], store: NamedDependency[Store]) -> RunDetail:
        return await run_detail_or_404(store, run_id)

    @get(
        "/{run_id:str}/events",
        summary="Server-sent events of a run, resumable with Last-Event-ID",
    )
    async def events(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        broker: NamedDependency[Broker],
        after: int | None = Parameter(default=None, ge=0, le=MAX_ID),
    ) -> ServerSentEvent:
        await existing_run(store, run_id)
        return run_event_stream(store, broker, run_id, resume_point(request, after))
