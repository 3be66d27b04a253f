"""Sessions: the list with totals and a session's page, each with a JSON twin under /api."""

from __future__ import annotations

import math

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, Parameter
from litestar.response import Redirect, Template

from app.sessions.context import SessionDetail, SessionList, session_detail, session_list
from app.sessions.queries import session_by_name
from app.store import Store
from app.web.htmx import is_htmx

PAGE_SIZE = 50
SESSION_RUNS = 50


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
        listed = await session_list(store, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        context = {
            "sessions": listed.sessions,
            "total": listed.total,
            "page": page,
            "pages": max(1, math.ceil(listed.total / PAGE_SIZE)),
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
        detail = await session_detail(store, session_id, SESSION_RUNS)
        return Template(
            "session.html",
            context={
                "session": detail.session,
                "runs": detail.runs,
                "models": detail.models,
                "nav": "sessions",
            },
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
    ) -> SessionList:
        return await session_list(store, limit, offset)

    @get("/{session_id:int}", summary="A session's totals, per-model breakdown and latest runs")
    async def show(
        self,
        session_id: FromPath[int],
        store: NamedDependency[Store],
        limit: int = Parameter(default=50, ge=1, le=500),
    ) -> SessionDetail:
        return await session_detail(store, session_id, limit)
