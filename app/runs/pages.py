"""HTML pages: dashboard, runs list, new-run form, live run thread."""

from __future__ import annotations

import math
from typing import Annotated, Any

from jinja2 import Environment
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, Parameter, QueryParameter, URLEncodedBody
from litestar.response import Redirect, ServerSentEvent, Template

from app.auth.guards import requires_member
from app.dashboard.charts import DEFAULT_RANGE, RANGES, dashboard_charts
from app.evals.pages import run_page_extras
from app.runs.filters import FILTER_PARAMS, STATUSES, count_filtered, filtered_runs, parse_filters
from app.runs.runner import InputError, Runner, parse_run_input
from app.sessions.queries import session_names
from app.store import Store
from app.store.lineage import run_lineage
from app.store.live import Broker
from app.store.runs import draft_text, list_runs, run_detail, totals
from app.store.statuses import TERMINAL
from app.web.deps import existing_run
from app.web.events import resume_point, run_event_stream
from app.web.views import thread_items

PAGE_SIZE = 50


def is_htmx(request: Request) -> bool:
    # A history restore (back button after an htmx swap) needs the whole page.
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


def redirect_to(request: Request, url: str) -> Response:
    """After a form post: htmx follows an HX-Redirect header, a plain form a 303."""
    if is_htmx(request):
        return Response(content=None, status_code=204, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


def form_context(
    runner: NamedDependency[Runner], values: dict[str, Any] | None = None, error: str = ""
) -> dict:
    values = values or {}
    return {
        "models": runner.model_choices(),
        "tools": runner.tool_names,
        "defaults": {
            "model": runner.config.resolved_default_model,
            "temperature": runner.config.temperature,
            "max_tokens": runner.config.max_tokens,
        },
        "values": values,
        "error": error,
    }


def form_to_input(form: dict[str, Any]) -> dict[str, Any]:
    """Form fields are strings; checkboxes repeat; map onto the API's field names."""
    data = {k: v for k, v in form.items() if k not in ("tools", "tools_present")}
    if form.get("tools_present"):
        tools = form.get("tools") or []
        data["tools"] = tools if isinstance(tools, list) else [tools]
    for key in ("temperature", "max_tokens", "max_rounds", "model", "system_prompt", "session"):
        if isinstance(data.get(key), str) and not data[key].strip():
            data.pop(key)
    return data


class PagesController(Controller):
    path = "/"
    include_in_schema = False

    @get("/")
    async def dashboard(
        self,
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        range_key: Annotated[str, QueryParameter(name="range")] = DEFAULT_RANGE,
    ) -> Template:
        kpis = await store.read(totals)
        recent = await store.read(list_runs, 10, 0)
        if range_key not in RANGES:
            raise InputError(f"range must be one of {', '.join(RANGES)}")
        charts = await store.read(dashboard_charts, range_key)
        return Template(
            "dashboard.html",
            context={
                "kpis": kpis,
                "runs": recent,
                "nav": "dashboard",
                "charts": charts,
                **form_context(runner),
            },
        )

    @get("/runs")
    async def runs(
        self,
        request: Request,
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        page: int = Parameter(default=1, ge=1),
    ) -> Template:
        filters = parse_filters({k: request.query_params.get(k) for k in FILTER_PARAMS})
        total, capped = await store.read(count_filtered, filters)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        rows = await store.read(filtered_runs, filters, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        context = {
            "runs": rows,
            "page": page,
            "pages": pages,
            "total": total,
            "nav": "runs",
            "filters": filters,
            "qs": filters.query_string(),
            "capped": capped,
        }
        if is_htmx(request):
            return Template("partials/runs_table.html", context=context)
        context.update(
            statuses=STATUSES,
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
            run_input = parse_run_input(form_to_input(data), runner.config, runner.tool_names)
            run = await runner.start(run_input, source="studio")
        except InputError as exc:
            return Template(
                "partials/run_form.html" if is_htmx(request) else "new_run.html",
                context={"nav": "new", **form_context(runner, data, str(exc))},
                status_code=422,
            )
        return redirect_to(request, f"/runs/{run['id']}")

    @get("/runs/{run_id:str}")
    async def run_page(self, run_id: FromPath[str], store: NamedDependency[Store]) -> Template:
        detail = await store.read(run_detail, run_id)
        if detail is None:
            raise NotFoundException(f"run {run_id!r} not found")
        run = detail["run"]
        live = run["status"] not in TERMINAL
        draft = await store.read(draft_text, run_id) if live else ""
        lineage = await store.read(run_lineage, run_id)
        return Template(
            "run.html",
            context={
                "run": run,
                "detail": detail,
                "items": thread_items(detail),
                "live": live,
                "draft": draft,
                "nav": "runs",
                "lineage": lineage,
                "children": lineage["children"],
                **(await run_page_extras(store, run_id)),
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
