"""Trace pages: the trace card of a run and the detail of one span.

The run page includes ``_trace_card.html`` and fetches its rows with htmx;
``/runs/{id}/trace`` answers that request with the card alone, and a
browser without JavaScript with a page of its own. A span's detail is the
same: a partial for the panel beside the tree, a full page otherwise.
"""

from __future__ import annotations

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from app.store import Store
from app.traces.context import run_trace, span_detail, trace_card
from app.web.htmx import is_htmx


class TracePages(Controller):
    path = "/runs/{run_id:str}"
    include_in_schema = False

    @get("/trace")
    async def trace(
        self, request: Request, run_id: FromPath[str], store: NamedDependency[Store]
    ) -> Template:
        context = {**trace_card(await run_trace(store, run_id)), "nav": "runs"}
        name = "partials/_trace_card.html" if is_htmx(request) else "trace.html"
        return Template(name, context=context)

    @get("/spans/{span_id:str}")
    async def span(
        self,
        request: Request,
        run_id: FromPath[str],
        span_id: FromPath[str],
        store: NamedDependency[Store],
    ) -> Template:
        context = await span_detail(store, run_id, span_id)
        name = "partials/_span_detail.html" if is_htmx(request) else "span.html"
        return Template(name, context=context)
