"""JSON API of evaluation: evaluations, memory snapshots, datasets, experiments.

Handlers are thin: bodies are typed for the OpenAPI schema, then checked by
the same domain functions the pages use (bad input -> InputError -> 400 with
a message; unknown ids -> 404).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from app.auth.guards import requires_member, who
from app.dashboard.charts import breakdown, dashboard_charts, eval_charts
from app.evals.apply import evaluate_run, parse_evaluators
from app.evals.store import list_evaluations, parse_evaluation, record_evaluation
from app.experiments.datasets import (
    check_name,
    create_dataset,
    dataset_from_runs,
    dataset_items,
    get_dataset,
    list_datasets,
    parse_items,
    parse_upload,
)
from app.experiments.queries import (
    compare_experiments,
    experiment_items,
    get_experiment,
    list_experiments,
    metric_summary,
)
from app.experiments.runner import Experiments
from app.memory.snapshots import all_snapshots, diff_snapshots
from app.runs.runner import InputError, Runner
from app.store import Store
from app.store.runs import get_run
from app.store.statuses import ACTIVE
from app.web.deps import existing_run
from app.web.params import MAX_ID, QueryId, RowId


def provide_experiments(state: State) -> Experiments:
    return state.experiments


EXPERIMENT_DEPENDENCIES = {"experiments": Provide(provide_experiments, sync_to_thread=False)}


# Ids from clients are bounded so SQLite never sees an integer it cannot store.


@dataclass
class EvaluationCreate:
    """Body of ``POST /api/evals``: a value, a label or both."""

    run_id: str
    metric: str
    value: float | None = None
    label: str | None = None
    comment: str | None = None
    source: str = "api"  # human | api | heuristic | llm-judge
    passed: bool | None = None


@dataclass
class EvaluateRun:
    """Body of ``POST /api/evals/run``: evaluators by name, or ``{"name", "params"}``."""

    run_id: str
    evaluators: list[Any]
    expected: str | None = None


@dataclass
class DatasetCreate:
    """Either ``items`` (objects with input, expected?) or a file's ``content`` with ``format``."""

    name: str
    items: list[Any] | None = None  # objects; checked by parse_items for a clear message
    content: str | None = None
    format: str | None = None  # csv | jsonl
    description: str | None = None


@dataclass
class DatasetFromRuns:
    name: str
    run_ids: list[str]


@dataclass
class ExperimentCreate:
    dataset_id: int
    config: dict[str, Any] | None = (
        None  # model, temperature, max_tokens, system_prompt, tools, max_rounds
    )
    evaluators: list[Any] | None = None
    name: str | None = None
    concurrency: int | None = None


class EvalsAPI(Controller):
    path = "/api/evals"
    tags = ["evaluations"]

    @post("/", summary="Record an evaluation of a run", status_code=201, guards=[requires_member])
    async def create(
        self, request: Request, data: JSONBody[EvaluationCreate], store: NamedDependency[Store]
    ) -> dict[str, Any]:
        evaluation = parse_evaluation(asdict(data))
        try:
            return await store.write(record_evaluation, evaluation, who(request))
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None

    @get("/", summary="Evaluations, newest first")
    async def index(
        self,
        store: NamedDependency[Store],
        run_id: FromQuery[str | None] = None,
        metric: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0,
    ) -> dict[str, Any]:
        rows = await store.read(list_evaluations, run_id, metric, source, limit, offset)
        return {"evaluations": rows, "limit": limit, "offset": offset}

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
    ) -> dict[str, Any]:
        evaluators = parse_evaluators(data.evaluators, runner)
        if not evaluators:
            raise InputError("name at least one evaluator")
        run = await store.read(get_run, data.run_id)
        if run is None:
            raise NotFoundException(f"run {data.run_id!r} not found")
        if run["status"] in ACTIVE:
            raise InputError("the run has not finished yet")
        rows = await evaluate_run(
            store, runner, data.run_id, evaluators, data.expected, who(request)
        )
        return {"evaluations": rows}

    @get("/summary", summary="Success rate and metrics over time, per model and per session")
    async def summary(
        self,
        store: NamedDependency[Store],
        range_key: Annotated[
            str, QueryParameter(name="range", pattern="^(24h|7d|30d|90d)$")
        ] = "7d",
        model: FromQuery[str | None] = None,
        session: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        charts = await store.read(eval_charts, range_key, model, session)
        return {
            "range": range_key,
            "success": charts["success"],
            "metrics": charts["metrics"],
            "by_model": await store.read(breakdown, "model", range_key),
            "by_session": await store.read(breakdown, "session", range_key),
            "runs": (await store.read(dashboard_charts, range_key))["charts"],
        }


class MemoryAPI(Controller):
    path = "/api/runs/{run_id:str}/memory"
    tags = ["runs"]

    @get("/", summary="A run's memory snapshots, each with what changed since the previous")
    async def snapshots(self, run_id: FromPath[str], store: NamedDependency[Store]) -> dict:
        await existing_run(store, run_id)
        snaps = await store.read(all_snapshots, run_id)
        out, previous = [], None
        for snap in snaps:
            diff = diff_snapshots(previous, snap)
            out.append(
                {
                    **snap,
                    "added": [m["index"] for m in diff["messages"] if m["state"] == "added"],
                    "scratch_changed": {
                        s["key"]: {"old": s["old"], "new": s["value"]}
                        for s in diff["scratch"]
                        if s["state"] != "same"
                    },
                }
            )
            previous = snap
        return {"run_id": run_id, "snapshots": out}


class DatasetsAPI(Controller):
    path = "/api/datasets"
    tags = ["datasets"]

    @post(
        "/",
        summary="Create a dataset from items or CSV/JSONL text",
        status_code=201,
        guards=[requires_member],
    )
    async def create(
        self, request: Request, data: JSONBody[DatasetCreate], store: NamedDependency[Store]
    ) -> dict[str, Any]:
        name = check_name(data.name)
        if data.items is not None and data.content is not None:
            raise InputError("give items or content, not both")
        if data.items is not None:
            items, source = parse_items(data.items), "api"
        elif data.content is not None:
            items = parse_upload(data.content, fmt=data.format or None)
            source = (data.format or "jsonl").lower()
        else:
            raise InputError("give items (a list) or content (CSV or JSONL text)")
        return await store.write(
            create_dataset, name, items, source, data.description, who(request)
        )

    @post(
        "/from-runs",
        summary="Create a dataset from runs (prompt -> input, answer -> expected)",
        status_code=201,
        guards=[requires_member],
    )
    async def from_runs(
        self, request: Request, data: JSONBody[DatasetFromRuns], store: NamedDependency[Store]
    ) -> dict[str, Any]:
        return await store.write(
            dataset_from_runs, check_name(data.name), data.run_ids, who(request)
        )

    @get("/", summary="Datasets, newest first")
    async def index(self, store: NamedDependency[Store]) -> dict[str, Any]:
        return {"datasets": await store.read(list_datasets)}

    @get("/{dataset_id:int}", summary="A dataset with its items")
    async def show(self, dataset_id: RowId, store: NamedDependency[Store]) -> dict:
        dataset = await store.read(get_dataset, dataset_id)
        if dataset is None:
            raise NotFoundException(f"dataset {dataset_id} not found")
        return {**dataset, "items": await store.read(dataset_items, dataset_id)}


class ExperimentsAPI(Controller):
    path = "/api/experiments"
    tags = ["experiments"]
    dependencies = EXPERIMENT_DEPENDENCIES

    @post(
        "/",
        summary="Run a dataset against one configuration and score every item",
        status_code=201,
        guards=[requires_member],
    )
    async def create(
        self,
        request: Request,
        data: JSONBody[ExperimentCreate],
        experiments: NamedDependency[Experiments],
    ) -> dict[str, Any]:
        return await experiments.start(
            data.dataset_id,
            data.config,
            data.evaluators,
            data.name,
            data.concurrency,
            created_by=who(request),
        )

    @get("/", summary="Experiments, newest first")
    async def index(self, store: NamedDependency[Store]) -> dict[str, Any]:
        return {"experiments": await store.read(list_experiments)}

    @get("/compare", summary="Two experiments over one dataset, item by item")
    async def compare(
        self, store: NamedDependency[Store], a: QueryId, b: QueryId
    ) -> dict[str, Any]:
        try:
            return await store.read(compare_experiments, a, b)
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None
        except ValueError as exc:
            raise InputError(str(exc)) from None

    @get("/{experiment_id:int}", summary="An experiment with its items, scores and summary")
    async def show(self, experiment_id: RowId, store: NamedDependency[Store]) -> dict:
        experiment = await store.read(get_experiment, experiment_id)
        if experiment is None:
            raise NotFoundException(f"experiment {experiment_id} not found")
        return {
            **experiment,
            "items": await store.read(experiment_items, experiment_id),
            "metrics": await store.read(metric_summary, experiment_id),
        }
