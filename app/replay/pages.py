"""Pages for replays and diffs: the replay form, a diff, comparing any two runs.

Handlers stay thin: the domain lives in ``app.replay.replays`` (start a replay, make
and fill diffs) and ``app.replay.diffs`` (the comparison itself).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, Parameter, URLEncodedBody
from litestar.response import Redirect, Template

from app.auth.guards import requires_member
from app.core.errors import InputError
from app.replay.context import DiffRow, diff_or_404
from app.replay.lineage import child_tree
from app.replay.replays import (
    DiffCreate,
    ReplayCreate,
    RunNotFound,
    compare_runs,
    overrides_of,
    save_comparison,
    start_replay,
)
from app.runs.form import NUMBER_FIELDS
from app.runs.runner import Runner
from app.store import Store
from app.store.runs import get_run, list_runs, run_params
from app.store.statuses import TERMINAL
from app.web.bodies import from_form
from app.web.deps import existing_run
from app.web.htmx import is_htmx, redirect_to


def parent_values(parent: dict[str, Any], tool_names: list[str]) -> dict[str, Any]:
    """The replay form prefilled with what the parent ran with."""
    params = run_params(parent)
    tools = params.get("tools")
    return {
        "model": parent.get("model") or params.get("model"),
        "temperature": params.get("temperature"),
        "max_tokens": params.get("max_tokens"),
        "max_rounds": params.get("max_rounds"),
        "system_prompt": params.get("system_prompt") or "",
        "session": parent.get("session_id") or "",
        "tools": list(tool_names if tools is None else tools),
    }


def form_overrides(form: dict[str, Any]) -> dict[str, Any]:
    """Form fields checked as a ``ReplayCreate``, as overrides. A blank model or
    number keeps the parent's value; a blank system prompt or session means none;
    unchecked tools are disabled."""
    fields = {k: v for k, v in form.items() if k not in ("tools", "tools_present")}
    for key in ("model", *NUMBER_FIELDS):
        if isinstance(fields.get(key), str):
            fields[key] = fields[key].strip()
    if form.get("tools_present"):
        fields["tools"] = form.get("tools") or []
    overrides = overrides_of(from_form(fields, ReplayCreate, lists=("tools",)))
    for key in ("system_prompt", "session"):
        # from_form reads a blank field as "not given"; here it clears the parent's.
        if isinstance(form.get(key), str) and key not in overrides:
            overrides[key] = form[key]
    return overrides


def _submitted_values(form: dict[str, Any]) -> dict[str, Any]:
    values = {
        k: (form.get(k) if form.get(k) != "" else None)
        for k in ("model", "temperature", "max_tokens", "max_rounds")
    }
    tools = form.get("tools") or []
    values.update(
        system_prompt=form.get("system_prompt") or "",
        session=form.get("session") or "",
        tools=tools if isinstance(tools, list) else [tools],
    )
    return values


def replay_context(
    runner: Runner, parent: dict[str, Any], values: dict[str, Any], error: str = ""
) -> dict:
    models = runner.model_choices()
    return {
        "parent": parent,
        "values": values,
        "error": error,
        "models": models,
        "model_names": [m for m, _ in models],
        "tools": runner.tool_names,
        "nav": "runs",
    }


async def diff_context(store: Store, diff: DiffRow | dict[str, Any]) -> dict[str, Any]:
    run_a = await store.read(get_run, diff["run_a"])
    run_b = await store.read(get_run, diff["run_b"])
    if run_a is None or run_b is None:
        raise NotFoundException("a run of this diff no longer exists")
    pending = next((r for r in (run_b, run_a) if r["status"] not in TERMINAL), run_b)
    return {"diff": diff, "run_a": run_a, "run_b": run_b, "pending_run": pending, "nav": "runs"}


class ReplayPagesController(Controller):
    path = "/"
    include_in_schema = False

    @get("/runs/{run_id:str}/replay")
    async def replay_form(
        self, run_id: FromPath[str], store: NamedDependency[Store], runner: NamedDependency[Runner]
    ) -> Template:
        parent = await existing_run(store, run_id)
        values = parent_values(parent, runner.tool_names)
        return Template("replay.html", context=replay_context(runner, parent, values))

    @post("/runs/{run_id:str}/replay", status_code=303, guards=[requires_member])
    async def replay(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response | Template:
        parent = await existing_run(store, run_id)
        try:
            run, _diff_id = await start_replay(
                runner, run_id, form_overrides(data), source="studio"
            )
        except InputError as exc:
            context = replay_context(runner, parent, _submitted_values(data), str(exc))
            name = "partials/replay_form.html" if is_htmx(request) else "replay.html"
            return Template(name, context=context, status_code=422)
        return redirect_to(request, f"/runs/{run['id']}")

    @get("/runs/{run_id:str}/children")
    async def children(self, run_id: FromPath[str], store: NamedDependency[Store]) -> Template:
        run = await existing_run(store, run_id)
        tree = await store.read(child_tree, run_id)
        live = run["status"] not in TERMINAL
        return Template(
            "partials/_run_children.html", context={"run": run, "children": tree, "live": live}
        )

    @get("/diffs/new")
    async def compare(
        self,
        store: NamedDependency[Store],
        a: str | None = Parameter(default=None, max_length=64),
        b: str | None = Parameter(default=None, max_length=64),
    ) -> Template:
        a, b = (a or "").strip(), (b or "").strip()
        error = ""
        if a and b:
            try:
                data = await compare_runs(store, a, b)
            except (InputError, RunNotFound) as exc:
                error = str(exc)
            else:
                diff = {
                    "id": None,
                    "run_a": a,
                    "run_b": b,
                    "kind": "compare",
                    "status": "ready",
                    "data": data,
                    "overrides": {},
                }
                return Template(
                    "diff.html", context={**await diff_context(store, diff), "unsaved": True}
                )
        recent = await store.read(list_runs, 30, 0)
        return Template(
            "diff_new.html",
            context={"a": a, "b": b, "error": error, "recent": recent, "nav": "runs"},
            status_code=422 if error else 200,
        )

    @post("/diffs", status_code=303, guards=[requires_member])
    async def save(
        self, store: NamedDependency[Store], data: URLEncodedBody[dict[str, Any]]
    ) -> Redirect:
        body = from_form(data, DiffCreate)
        try:
            row = await save_comparison(store, body.a.strip(), body.b.strip())
        except RunNotFound as exc:
            raise NotFoundException(str(exc)) from None
        return Redirect(f"/diffs/{row['id']}", status_code=303)

    @get("/diffs/{diff_id:str}")
    async def show(self, diff_id: FromPath[str], store: NamedDependency[Store]) -> Template:
        diff = await diff_or_404(store, diff_id)
        return Template("diff.html", context=await diff_context(store, diff))

    @get("/diffs/{diff_id:str}/body")
    async def body(self, diff_id: FromPath[str], store: NamedDependency[Store]) -> Template:
        diff = await diff_or_404(store, diff_id)
        return Template("partials/diff_body.html", context=await diff_context(store, diff))
