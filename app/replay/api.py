"""JSON API for replays and diffs: ``POST /api/runs/{id}/replay``, ``/api/diffs``."""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody

from app.auth.guards import requires_member
from app.replay.context import DiffRow, diff_or_404
from app.replay.replays import (
    DiffCreate,
    ReplayCreate,
    RunNotFound,
    overrides_of,
    save_comparison,
    start_replay,
)
from app.runs.runner import Runner
from app.runs.source import run_source
from app.store import Store


class ReplayCreated(msgspec.Struct):
    run_id: str
    diff_id: str
    status: str
    parent_run_id: str


class DiffCreated(msgspec.Struct):
    diff_id: str
    status: str


class ReplayAPI(Controller):
    path = "/api/runs/{run_id:str}/replay"
    tags = ["replay"]

    @post(
        "/",
        summary="Replay a run with overrides; answers with the new run and its (pending) diff",
        status_code=201,
        guards=[requires_member],
    )
    async def replay(
        self,
        request: Request,
        run_id: FromPath[str],
        runner: NamedDependency[Runner],
        data: JSONBody[ReplayCreate | None] = None,
    ) -> ReplayCreated:
        overrides = overrides_of(data or ReplayCreate())
        try:
            run, diff_id = await start_replay(runner, run_id, overrides, source=run_source(request))
        except RunNotFound as exc:
            raise NotFoundException(str(exc)) from None
        return ReplayCreated(
            run_id=run["id"], diff_id=diff_id, status=run["status"], parent_run_id=run_id
        )


class DiffsAPI(Controller):
    path = "/api/diffs"
    tags = ["diffs"]

    @get("/{diff_id:str}", summary="A diff of two runs (status pending until both have ended)")
    async def show(self, diff_id: FromPath[str], store: NamedDependency[Store]) -> DiffRow:
        return await diff_or_404(store, diff_id)

    @post(
        "/",
        summary="Compare any two runs and store the diff",
        status_code=201,
        guards=[requires_member],
    )
    async def create(
        self, data: JSONBody[DiffCreate], store: NamedDependency[Store]
    ) -> DiffCreated:
        try:
            diff = await save_comparison(store, data.a.strip(), data.b.strip())
        except RunNotFound as exc:
            raise NotFoundException(str(exc)) from None
        return DiffCreated(diff_id=diff["id"], status=diff["status"])
