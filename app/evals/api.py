"""JSON API of evaluations: record, list, run evaluators, and the summary over time.

Handlers are thin: Litestar checks each body against its Struct in
``app.evals.bodies`` (a 400 naming the field); the domain functions check
what needs the store or the runner (bad input -> InputError -> 400 with a
message; unknown ids -> 404). Answers are the types of ``app.evals.responses``.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, JSONBody, QueryParameter

from app.auth.guards import requires_member, who
from app.dashboard.charts import RANGE_PATTERN
from app.evals.apply import evaluate_request
from app.evals.bodies import EvaluateRun, EvaluationCreate
from app.evals.context import eval_summary
from app.evals.responses import (
    EvalSummary,
    Evaluation,
    EvaluationPage,
    EvaluationsRecorded,
    ListedEvaluation,
)
from app.evals.store import evaluation_row, list_evaluations, record_evaluation
from app.runs.runner import Runner
from app.store import Store
from app.web.params import MAX_ID


class EvalsAPI(Controller):
    path = "/api/evals"
    tags = ["evaluations"]

    @post("/", summary="Record an evaluation of a run", status_code=201, guards=[requires_member])
    async def create(
        self, request: Request, data: JSONBody[EvaluationCreate], store: NamedDependency[Store]
    ) -> Evaluation:
        try:
            row = await store.write(record_evaluation, evaluation_row(data), who(request))
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None
        return Evaluation.of_row(row)

    @get("/", summary="Evaluations, newest first")
    async def index(
        self,
        store: NamedDependency[Store],
        run_id: FromQuery[str | None] = None,
        metric: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        # Bounded so SQLite never sees an integer it cannot store.
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0,
    ) -> EvaluationPage:
        rows = await store.read(list_evaluations, run_id, metric, source, limit, offset)
        return EvaluationPage(
            evaluations=[ListedEvaluation.of_row(r) for r in rows], limit=limit, offset=offset
        )

    @post(
        "/run",
        summary="Score a run with built-in evaluators or the LLM judge",
        status_code=201,
        guards=[requires_member],
    )
    async def evaluate(
        self,
        request: Request,
        data: JSONBody[EvaluateRun],
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
    ) -> EvaluationsRecorded:
        try:
            rows = await evaluate_request(store, runner, data, who(request))
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None
        return EvaluationsRecorded(evaluations=[Evaluation.of_row(r) for r in rows])

    @get("/summary", summary="Success rate and metrics over time, per model and per session")
    async def summary(
        self,
        store: NamedDependency[Store],
        range_key: Annotated[str, QueryParameter(name="range", pattern=RANGE_PATTERN)] = "7d",
        model: FromQuery[str | None] = None,
        session: FromQuery[str | None] = None,
    ) -> EvalSummary:
        return await eval_summary(store, range_key, model, session)
