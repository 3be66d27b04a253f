"""JSON API for replays and diffs: ``POST /api/runs/{id}/replay``, ``/api/diffs``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody

from app.auth.guards import requires_member
from app.replay.replays import RunNotFound, ensure_diff, save_comparison, start_replay
from app.runs.runner import InputError, Runner
from app.runs.source import run_source
from app.store import Store


@dataclass
class ReplayCreate:
    """Overrides for a replay; a field left out (or null) keeps the original run's value.

    ``system_prompt: ""`` removes the system prompt and ``tools: []`` disables
    every tool.
    """

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_rounds: int | None = None
    system_prompt: str | None = None
    tools: list[str] | None = None
    session: str | None = None


@dataclass
class ReplayCreated:
    run_id: str
    diff_id: str
    status: str
    parent_run_id: str


@dataclass
class DiffCreate:
    a: str
    b: str


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
        overrides = {k: v for k, v in asdict(data or ReplayCreate()).items() if v is not None}
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
    async def show(self, diff_id: FromPath[str], store: NamedDependency[Store]) -> dict[str, Any]:
        diff = await ensure_diff(store, diff_id)
        if diff is None:
            raise NotFoundException(f"diff {diff_id!r} not found")
        return diff

    @post(
        "/",
        summary="Compare any two runs and store the diff",
        status_code=201,
        guards=[requires_member],
    )
    async def create(
        self, data: JSONBody[DiffCreate], store: NamedDependency[Store]
    ) -> dict[str, Any]:
        a, b = data.a.strip(), data.b.strip()
        if not a or not b:
            raise InputError("a and b must be run ids")
        try:
            diff = await save_comparison(store, a, b)
        except RunNotFound as exc:
            raise NotFoundException(str(exc)) from None
        return {"diff_id": diff["id"], "status": diff["status"]}
