"""Evaluation pages: the /evals dashboard, scoring a run by hand, the memory viewer.

The run page includes the same partials these handlers return to htmx
(``_run_evals.html``, ``_memory_view.html``); ``run_page_extras`` gives the
run page their context so both render alike.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Template

from app.auth.guards import requires_member, who
from app.dashboard.charts import RANGES, breakdown, eval_charts
from app.evals.apply import evaluate_run, parse_evaluators
from app.evals.heuristics import HEURISTICS
from app.evals.judge import METRIC as JUDGE
from app.evals.store import list_evaluations, parse_evaluation, record_evaluation, run_evaluations
from app.memory.snapshots import memory_view
from app.runs.runner import InputError, Runner
from app.store import Store
from app.store.statuses import ACTIVE
from app.web.deps import existing_run

# For the one free-text field of the "run an evaluator" form: what it means per evaluator.
AUTO_ARGUMENT = {
    "exact_match": None,  # compares with "expected"
    "contains": "text",
    "regex": "pattern",
    "latency_budget": "max_ms",
    "cost_budget": "max_usd",
}


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def evaluator_choices() -> list[tuple[str, str]]:
    return [(h.name, h.title) for h in HEURISTICS.values()] + [(JUDGE, "LLM judge")]


async def run_page_extras(store: Store, run_id: str) -> dict[str, Any]:
    """What the run page needs for its memory viewer and evaluations panel."""
    return {
        "mem": await store.read(memory_view, run_id),
        "evaluations": await store.read(run_evaluations, run_id),
        "evaluator_choices": evaluator_choices(),
    }


def human_evaluations(run_id: str, form: dict[str, Any]) -> list[dict[str, Any]]:
    """Thumbs, a 1-5 score and a corrected answer from the run page form, validated."""
    comment = (form.get("comment") or "").strip() or None
    rows = []
    thumb = form.get("thumb")
    if thumb:
        if thumb not in ("up", "down"):
            raise InputError("thumb must be up or down")
        rows.append(
            {
                "run_id": run_id,
                "metric": "thumbs",
                "value": 1 if thumb == "up" else 0,
                "label": thumb,
                "comment": comment,
                "source": "human",
            }
        )
    score = form.get("score")
    if score not in (None, ""):
        if score not in ("1", "2", "3", "4", "5"):
            raise InputError("score must be a whole number from 1 to 5")
        rows.append(
            {
                "run_id": run_id,
                "metric": "score",
                "value": score,
                "label": f"{score}/5",
                "comment": comment,
                "source": "human",
                "passed": int(score) >= 4,
            }
        )
    correction = (form.get("correction") or "").strip()
    if correction:
        rows.append(
            {
                "run_id": run_id,
                "metric": "correction",
                "label": correction,
                "comment": comment,
                "source": "human",
            }
        )
    if not rows:
        raise InputError("pick thumbs up or down, a score, or write a corrected answer")
    # The comment goes with the first verdict only, so the list does not repeat it.
    for row in rows[1:]:
        row["comment"] = None
    return [parse_evaluation(r, "human") for r in rows]


class EvalPagesController(Controller):
    path = "/"
    include_in_schema = False

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
    ) -> Template:
        run = await existing_run(store, run_id)
        try:
            for row in human_evaluations(run_id, data):
                await store.write(record_evaluation, row, who(request))
        except InputError as exc:
            return await self._panel(store, run, 422, eval_error=str(exc), values=data)
        return await self._panel(store, run, eval_saved="Saved.")

    @post("/runs/{run_id:str}/evals/auto", guards=[requires_member], status_code=200)
    async def auto_evaluate(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Template:
        run = await existing_run(store, run_id)
        name = data.get("evaluator") or ""
        argument = (data.get("argument") or "").strip()
        expected = (data.get("expected") or "").strip() or None
        try:
            if run["status"] in ACTIVE:
                raise InputError("the run has not finished yet")
            params = {}
            if AUTO_ARGUMENT.get(name) and argument:
                params[AUTO_ARGUMENT[name]] = argument
            if name in ("exact_match", JUDGE) and argument and expected is None:
                expected = argument  # the one field is the expected answer for these
            evaluators = parse_evaluators([{"name": name, "params": params}], runner)
            rows = await evaluate_run(store, runner, run_id, evaluators, expected, who(request))
        except InputError as exc:
            return await self._panel(store, run, 422, auto_error=str(exc), values=data)
        return await self._panel(store, run, eval_saved=f"{rows[0]['metric']} recorded.")

    @get("/runs/{run_id:str}/memory")
    async def memory(
        self,
        request: Request,
        run_id: FromPath[str],
        store: NamedDependency[Store],
        step: Annotated[int | None, QueryParameter(ge=0, le=1_000_000)] = None,
    ) -> Template:
        run = await existing_run(store, run_id)
        context = {"run": run, "mem": await store.read(memory_view, run_id, step), "nav": "runs"}
        name = "partials/_memory_view.html" if _is_htmx(request) else "memory.html"
        return Template(name, context=context)

    @get("/evals")
    async def dashboard(
        self,
        store: NamedDependency[Store],
        range_key: Annotated[str, QueryParameter(name="range")] = "7d",
        model: FromQuery[str | None] = None,
        session: FromQuery[str | None] = None,
    ) -> Template:
        if range_key not in RANGES:
            raise InputError(f"range must be one of {', '.join(RANGES)}")
        charts = await store.read(eval_charts, range_key, model or None, session or None)
        by_model = await store.read(breakdown, "model", range_key)
        by_session = await store.read(breakdown, "session", range_key)
        metrics = sorted({m for g in by_model for m in g["metrics"]})
        return Template(
            "evals.html",
            context={
                "nav": "evals",
                "range": range_key,
                "model": model or "",
                "session": session or "",
                "charts": charts,
                "by_model": by_model,
                "by_session": [g for g in by_session if g["g"]],
                "metrics": metrics,
                "recent": await store.read(list_evaluations, None, None, None, 25, 0),
            },
        )
