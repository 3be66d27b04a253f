"""Evaluation pages: the /evals dashboard, and scoring a run by hand or by an evaluator.

The run page includes the same partials these handlers return to htmx
(``_run_evals.html``, ``_memory_view.html``); ``run_page_extras`` gives the
run page their context so both render alike. Without JavaScript the forms
post plainly: a saved evaluation then redirects (303) back to the run page's
evaluations card, and a refused one answers a full error page, never the bare
fragment.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from app.auth.guards import requires_member, who
from app.core.errors import InputError
from app.dashboard.charts import RANGES, checked_range, window
from app.evals.apply import evaluate_request
from app.evals.bodies import EvaluateRun, HumanScore
from app.evals.context import eval_breakdowns
from app.evals.heuristics import HEURISTICS
from app.evals.judge import METRIC as JUDGE
from app.evals.store import (
    human_evaluations,
    list_evaluations,
    record_evaluation,
    run_evaluations,
)
from app.memory.context import run_page_home
from app.memory.snapshots import memory_view
from app.runs.runner import Runner
from app.store import Store
from app.web.bodies import from_form
from app.web.deps import existing_run
from app.web.htmx import is_htmx

# For the one free-text field of the "run an evaluator" form: what it means per evaluator.
AUTO_ARGUMENT = {
    "exact_match": None,  # compares with "expected"
    "contains": "text",
    "regex": "pattern",
    "latency_budget": "max_ms",
    "cost_budget": "max_usd",
}


def evaluate_form(run_id: str, form: dict[str, Any]) -> EvaluateRun:
    """The run page's one-evaluator form as the API's body: its one free-text
    field becomes the evaluator's parameter, or the expected answer."""
    name = form.get("evaluator") or ""
    argument = (form.get("argument") or "").strip()
    expected = (form.get("expected") or "").strip() or None
    params = {}
    if AUTO_ARGUMENT.get(name) and argument:
        params[AUTO_ARGUMENT[name]] = argument
    if name in ("exact_match", JUDGE) and argument and expected is None:
        expected = argument  # the one field is the expected answer for these
    evaluators = [{"name": name, "params": params}]
    return from_form(
        {"run_id": run_id, "evaluators": evaluators, "expected": expected}, EvaluateRun
    )


def evaluator_choices() -> list[tuple[str, str]]:
    return [(h.name, h.title) for h in HEURISTICS.values()] + [(JUDGE, "LLM judge")]


async def run_page_extras(store: Store, run_id: str, step: int | None = None) -> dict[str, Any]:
    """What the run page needs for its memory viewer (at ``step``, default the last)
    and evaluations panel."""
    return {
        "mem": await store.read(memory_view, run_id, step),
        "memory_home": run_page_home(run_id),
        "evaluations": await store.read(run_evaluations, run_id),
        "evaluator_choices": evaluator_choices(),
    }


class EvalPagesController(Controller):
    path = "/"
    include_in_schema = False

    async def _answer(
        self, request: Request, store: Store, run: dict[str, Any], status: int, **extra: Any
    ) -> Response:
        """htmx swaps the evaluations card; a plain form post goes back to the run page."""
        if is_htmx(request):
            return await self._panel(store, run, status, **extra)
        back = f"/runs/{run['id']}#run-evals"
        if status == 200:
            return Redirect(back, status_code=303)
        message = extra.get("eval_error") or extra.get("auto_error")
        return Template(
            "error.html",
            context={"status": status, "message": f"Not saved: {message}", "back": back},
            status_code=status,
        )

    async def _panel(
        self, store: Store, run: dict[str, Any], status: int = 200, **extra: Any
    ) -> Template:
        context = {
            "run": run,
            "evaluations": await store.read(run_evaluations, run["id"]),
            "evaluator_choices": evaluator_choices(),
            **extra,
        }
        return Template("partials/_run_evals.html", context=context, status_code=status)

    @post("/runs/{run_id:str}/evals", guards=[requires_member], status_code=200)
    async def score_run(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response:
        run = await existing_run(store, run_id)
        try:
            for row in human_evaluations(run_id, from_form(data, HumanScore)):
                await store.write(record_evaluation, row, who(request))
        except InputError as exc:
            return await self._answer(request, store, run, 422, eval_error=str(exc), values=data)
        return await self._answer(request, store, run, 200, eval_saved="Saved.")

    @post("/runs/{run_id:str}/evals/auto", guards=[requires_member], status_code=200)
    async def auto_evaluate(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response:
        run = await existing_run(store, run_id)
        try:
            rows = await evaluate_request(store, runner, evaluate_form(run_id, data), who(request))
        except InputError as exc:
            return await self._answer(request, store, run, 422, auto_error=str(exc), values=data)
        saved = f"{rows[0]['metric']} recorded."
        return await self._answer(request, store, run, 200, eval_saved=saved)

    @get("/evals")
    async def dashboard(
        self,
        store: NamedDependency[Store],
        range_key: Annotated[str, QueryParameter(name="range")] = "7d",
        model: FromQuery[str | None] = None,
        session: FromQuery[str | None] = None,
    ) -> Template:
        summary = msgspec.to_builtins(
            await eval_breakdowns(store, checked_range(range_key), model, session)
        )
        return Template(
            "evals.html",
            context={
                "nav": "evals",
                "range": range_key,
                "model": model or "",
                "session": session or "",
                "charts": {
                    "window": window(range_key),
                    "ranges": list(RANGES),
                    "success": summary["success"],
                    "metrics": summary["metrics"],
                },
                "by_model": summary["by_model"],
                "by_session": [g for g in summary["by_session"] if g["g"]],
                "metrics": sorted({m for g in summary["by_model"] for m in g["metrics"]}),
                "recent": await store.read(list_evaluations, None, None, None, 25, 0),
            },
        )
