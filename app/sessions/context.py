"""What ``/sessions`` and ``/sessions/{id}`` show and their ``/api`` twins return, built once."""

from __future__ import annotations

from typing import TypedDict, cast

import msgspec
from litestar.exceptions import NotFoundException

from app.runs.context import RunRow
from app.runs.filters import RunFilter, filtered_runs
from app.sessions.queries import count_sessions, get_session, list_sessions, session_models
from app.store import Store


class SessionRow(TypedDict):
    """A session with the totals kept on its row, and the rates derived from them."""

    id: int
    name: str
    created_at: float | None
    last_run_at: float | None
    runs: int | None
    finished: int | None
    failed: int | None
    active: int
    failure_rate: float | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int
    cost_usd: float | None


class ModelBreakdown(TypedDict):
    """One model's share of a session's runs."""

    model: str | None
    runs: int
    failed: int | None
    finished: int | None
    tokens: int
    cost_usd: float
    avg_latency_ms: float | None


class SessionList(msgspec.Struct):
    """Sessions, the most recently used first."""

    sessions: list[SessionRow]
    total: int
    limit: int
    offset: int


class SessionDetail(msgspec.Struct):
    """A session, its per-model breakdown and its latest runs (newest first)."""

    session: SessionRow
    models: list[ModelBreakdown]
    runs: list[RunRow]


async def session_list(store: Store, limit: int, offset: int) -> SessionList:
    rows = await store.read(list_sessions, limit, offset)
    total = await store.read(count_sessions)
    return SessionList(
        sessions=cast(list[SessionRow], rows), total=total, limit=limit, offset=offset
    )


async def session_detail(store: Store, session_id: int, runs: int) -> SessionDetail:
    """The session and its latest ``runs`` runs; a 404 if there is no such session."""
    session = await store.read(get_session, session_id)
    if session is None:
        raise NotFoundException(f"session {session_id} not found")
    latest = await store.read(filtered_runs, RunFilter(session=session["name"]), runs, 0)
    models = await store.read(session_models, session["name"])
    return SessionDetail(
        session=cast(SessionRow, session),
        models=cast(list[ModelBreakdown], models),
        runs=cast(list[RunRow], latest),
    )
