"""The memory viewer: a run's messages and scratch at each step, and what changed.

The run page includes the same partial (``_memory_view.html``) that this
handler returns to htmx when a step is picked. ``?step=N`` selects a step
(a step the run does not have shows the last, with a note; a step that is
not a number is a 400 saying so).
"""

from __future__ import annotations

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from app.memory.context import memory_viewer, parse_step, viewer_home
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
        # Text, checked by parse_step: its 400 names the step and what a step is.
        step: FromQuery[str | None] = None,
    ) -> Template:
        fragment = is_htmx(request)
        home = viewer_home(run_id, request.headers.get("hx-current-url")) if fragment else None
        context = {**(await memory_viewer(store, run_id, parse_step(step), home)), "nav": "runs"}
        return Template(
            "partials/_memory_view.html" if fragment else "memory.html", context=context
        )
