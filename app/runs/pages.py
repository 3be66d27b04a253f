"""Run pages: the runs list, the new-run form, a run's live thread and its event stream."""

from __future__ import annotations

import math
from typing import Any, cast

from jinja2 import Environment
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter, URLEncodedBody
from litestar.response import ServerSentEvent, Template

from app.auth.guards import requires_member
from app.core.errors import InputError
from app.evals.pages import run_page_extras
from app.memory.context import parse_step
from app.replay.lineage import run_lineage
from app.runs.activity import current_activity
from app.runs.context import run_detail_or_404, run_list
from app.runs.filters import FILTER_PARAMS, parse_filters
from app.runs.form import form_context, run_from_form
from app.runs.input import to_run_input
from app.runs.live_lists import PAGE_SIZE
from app.runs.runner import Runner
from app.runs.stream import resume_point, run_event_stream
from app.sessions.queries import session_names
from app.store import Store
from app.store.live import Broker
from app.store.runs import draft_text
from app.store.statuses import ALL, TERMINAL
from app.traces.context import run_trace, trace_card
from app.web.deps import existing_run
from app.web.htmx import is_htmx, redirect_to
from app.web.views import thread_items


class PagesController(Controller):
    path = "/"
    include_in_schema = False

    @get("/runs")
    async def runs(
        self,
        request: Request,
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        page: int = Parameter(default=1, ge=1),
    ) -> Template:
        filters = parse_filters({k: request.query_params.get(k) for k in FILTER_PARAMS})
        listed = await run_list(store, filters, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        context = {
            "runs": listed.runs,
            "page": page,
            "pages": max(1, math.ceil(listed.total / PAGE_SIZE)),
            "total": listed.total,
            "nav": "runs",
            "filters": filters,
            "qs": filters.query_string(),
            "capped": listed.total_capped,
        }
        if is_htmx(request):
            return Template("partials/runs_table.html", context=context)
        context.update(
            statuses=ALL,
            models=runner.model_choices(),
            session_names=await store.read(session_names),
        )
        return Template("runs.html", context=context)

    @get("/runs/new")
    async def new_run(self, runner: NamedDependency[Runner]) -> Template:
        return Template("new_run.html", context={"nav": "new", **form_context(runner)})

    @post("/runs", status_code=303, guards=[requires_member])
    async def create_run(
        self,
        request: Request,
        runner: NamedDependency[Runner],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response | Template:
        try:
            run_input = to_run_input(run_from_form(data), runner.config, runner.tool_names)
            run = await runner.start(run_input, source="studio")
        except InputError as exc:
            return Template(
                "partials/run_form.html" if is_htmx(request) else "new_run.html",
                context={"nav": "new", **form_context(runner, data, str(exc))},
                status_code=422,
            )
        return redirect_to(request, f"/runs/{run['id']}")

    @get("/runs/{run_id:str}")
    async def run_page(
        self,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        step: FromQuery[str | None] = None,
    ) -> Template:
        # ``?step=N`` opens the memory viewer at that step (a linkable step).
        selected_step = parse_step(step)
        detail = await run_detail_or_404(store, run_id)
        run = detail["run"]
        live = run["status"] not in TERMINAL
        draft = await store.read(draft_text, run_id) if live else ""
        # What a live run is doing, as the stream would say it (no JavaScript needed).
        activity = await store.read(current_activity, run_id, run["last_seq"]) if live else None
        lineage = await store.read(run_lineage, run_id)
        # The trace card is drawn with the page. Its context goes first: the run
        # it read is later than ``detail``, and the live stream must resume
        # after the events the thread above was read with, not after later ones.
        trace = trace_card(await run_trace(store, run_id))
        return Template(
            "run.html",
            context={
                **trace,
                "run": run,
                "detail": detail,
                # thread_items reads any run detail, typed or not.
                "items": thread_items(cast(dict[str, Any], detail)),
                "live": live,
                "draft": draft,
                "activity": activity.view() if activity else None,
                "nav": "runs",
                "lineage": lineage,
                "children": lineage["children"],
                **(await run_page_extras(store, run_id, selected_step)),
            },
        )

    @get("/runs/{run_id:str}/events")
    async def run_events(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        broker: NamedDependency[Broker],
        jinja: NamedDependency[Environment],
        after: int | None = Parameter(default=None, ge=0),
    ) -> ServerSentEvent:
        await existing_run(store, run_id)
        return run_event_stream(store, broker, run_id, resume_point(request, after), jinja)
