"""The memory viewer: a run's messages and scratch at each step, and what changed.

The run page includes the same partial (``_memory_view.html``) that this
handler returns to htmx when a step is picked.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from app.memory.context import memory_viewer
from app.store import Store
from app.web.htmx import is_htmx


class MemoryPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/runs/{run_id:str}/memory")
    async def memory(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        step: Annotated[int | None, QueryParameter(ge=0, le=1_000_000)] = None,
    ) -> Template:
        context = {**(await memory_viewer(store, run_id, step)), "nav": "runs"}
        name = "partials/_memory_view.html" if is_htmx(request) else "memory.html"
        return Template(name, context=context)
