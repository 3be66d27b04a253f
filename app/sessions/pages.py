"""Sessions: the list with totals and a session's page, each with a JSON twin under /api."""

from __future__ import annotations

import math
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, Parameter
from litestar.response import Redirect, Template

from app.runs.filters import RunFilter, filtered_runs
from app.runs.pages import is_htmx
from app.sessions.queries import (
    count_sessions,
    get_session,
    list_sessions,
    session_by_name,
    session_models,
)
from app.store import Store

PAGE_SIZE = 50
SESSION_RUNS = 50


async def _session(store: Store, session_id: int) -> dict[str, Any]:
    session = await store.read(get_session, session_id)
    if session is None:
        raise NotFoundException(f"session {session_id} not found")
    return session


class SessionPagesController(Controller):
    path = "/sessions"
    include_in_schema = False

    @get("/")
    async def index(
        self,
        request: Request,
        store: NamedDependency[Store],
        page: int = Parameter(default=1, ge=1),
    ) -> Template:
        total = await store.read(count_sessions)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        rows = await store.read(list_sessions, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        context = {
            "sessions": rows,
            "total": total,
            "page": page,
            "pages": pages,
            "nav": "sessions",
        }
        name = "partials/sessions_table.html" if is_htmx(request) else "sessions.html"
        return Template(name, context=context)

    @get("/find")
    async def find(
        self, store: NamedDependency[Store], name: str = Parameter(max_length=200)
    ) -> Redirect:
        """A session by name (names may hold any character, so they are not paths)."""
        session = await store.read(session_by_name, name)
        if session is None:
            raise NotFoundException(f"no session named {name!r}")
        return Redirect(f"/sessions/{session['id']}", status_code=303)

    @get("/{session_id:int}")
    async def show(self, session_id: FromPath[int], store: NamedDependency[Store]) -> Template:
        session = await _session(store, session_id)
        runs = await store.read(filtered_runs, RunFilter(session=session["name"]), SESSION_RUNS, 0)
        models = await store.read(session_models, session["name"])
        return Template(
            "session.html",
            context={"session": session, "runs": runs, "models": models, "nav": "sessions"},
        )


class SessionsAPI(Controller):
    path = "/api/sessions"
    tags = ["sessions"]

    @get("/", summary="Sessions with their totals, most recently used first")
    async def index(
        self,
        store: NamedDependency[Store],
        limit: int = Parameter(default=50, ge=1, le=500),
        offset: int = Parameter(default=0, ge=0),
    ) -> dict[str, Any]:
        rows = await store.read(list_sessions, limit, offset)
        total = await store.read(count_sessions)
        return {"sessions": rows, "total": total, "limit": limit, "offset": offset}

    @get("/{session_id:int}", summary="A session's totals, per-model breakdown and latest runs")
    async def show(
        self,
        session_id: FromPath[int],
        store: NamedDependency[Store],
        limit: int = Parameter(default=50, ge=1, le=500),
    ) -> dict[str, Any]:
        session = await _session(store, session_id)
        runs = await store.read(filtered_runs, RunFilter(session=session["name"]), limit, 0)
        models = await store.read(session_models, session["name"])
        return {"session": session, "models": models, "runs": runs}
