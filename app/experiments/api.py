"""JSON API of datasets and experiments: create, list, read, compare.

Handlers are thin: Litestar checks each body against its Struct in
``app.experiments.bodies`` (a 400 naming the field); the domain functions
check what needs the store or the runner (bad input -> InputError -> 400
with a message; unknown ids -> 404). Reads share their context functions
with the pages (``app.experiments.context``).
"""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody

from app.auth.guards import requires_member, who
from app.experiments.bodies import DatasetCreate, DatasetFromRuns, ExperimentCreate
from app.experiments.context import (
    dataset_detail,
    dataset_list,
    experiment_comparison,
    experiment_detail,
    experiment_list,
)
from app.experiments.datasets import create_dataset, dataset_from_runs, items_of
from app.experiments.responses import (
    Comparison,
    Dataset,
    DatasetDetail,
    DatasetList,
    Experiment,
    ExperimentDetail,
    ExperimentList,
)
from app.experiments.runner import Experiments
from app.store import Store
from app.web.params import QueryId, RowId


def provide_experiments(state: State) -> Experiments:
    return state.experiments


EXPERIMENT_DEPENDENCIES = {"experiments": Provide(provide_experiments, sync_to_thread=False)}


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
    ) -> Dataset:
        items, source = items_of(data)
        dataset = await store.write(
            create_dataset, data.name, items, source, data.description, who(request)
        )
        return Dataset.of_row(dataset)

    @post(
        "/from-runs",
        summary="Create a dataset from runs (prompt -> input, answer -> expected)",
        status_code=201,
        guards=[requires_member],
    )
    async def from_runs(
        self, request: Request, data: JSONBody[DatasetFromRuns], store: NamedDependency[Store]
    ) -> Dataset:
        dataset = await store.write(dataset_from_runs, data.name, data.run_ids, who(request))
        return Dataset.of_row(dataset)

    @get("/", summary="Datasets, newest first")
    async def index(self, store: NamedDependency[Store]) -> DatasetList:
        return await dataset_list(store)

    @get("/{dataset_id:int}", summary="A dataset with its items")
    async def show(self, dataset_id: RowId, store: NamedDependency[Store]) -> DatasetDetail:
        dataset = await dataset_detail(store, dataset_id)
        if dataset is None:
            raise NotFoundException(f"dataset {dataset_id} not found")
        return dataset


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
    ) -> Experiment:
        return Experiment.of_row(await experiments.start(data, created_by=who(request)))

    @get("/", summary="Experiments, newest first")
    async def index(self, store: NamedDependency[Store]) -> ExperimentList:
        return await experiment_list(store)

    @get("/compare", summary="Two experiments over one dataset, item by item")
    async def compare(self, store: NamedDependency[Store], a: QueryId, b: QueryId) -> Comparison:
        try:
            return await experiment_comparison(store, a, b)
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None

    @get("/{experiment_id:int}", summary="An experiment with its items, scores and summary")
    async def show(self, experiment_id: RowId, store: NamedDependency[Store]) -> ExperimentDetail:
        experiment = await experiment_detail(store, experiment_id)
        if experiment is None:
            raise NotFoundException(f"experiment {experiment_id} not found")
        return experiment
