"""What the dataset and experiment pages and their JSON twins show, built once.

``/datasets/{id}``, ``/experiments``, ``/experiments/{id}`` (and its live
progress) and ``/experiments/compare`` render these; ``/api/datasets/{id}``,
``/api/experiments``, ``/api/experiments/{id}`` and
``/api/experiments/compare`` return them as they are.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.core.errors import InputError
from app.experiments.datasets import dataset_items, get_dataset, list_datasets
from app.experiments.queries import (
    compare_experiments,
    experiment_items,
    get_experiment,
    list_experiments,
    metric_summary,
)
from app.experiments.responses import (
    Comparison,
    Dataset,
    DatasetDetail,
    DatasetItem,
    DatasetList,
    Experiment,
    ExperimentDetail,
    ExperimentList,
    MetricSummary,
    comparison,
    experiment_item,
)
from app.store import Store


async def dataset_list(store: Store) -> DatasetList:
    return DatasetList(datasets=[Dataset.of_row(d) for d in await store.read(list_datasets)])


async def dataset_detail(store: Store, dataset_id: int) -> DatasetDetail | None:
    """A dataset with its items; None if there is no such dataset."""
    dataset = await store.read(get_dataset, dataset_id)
    if dataset is None:
        return None
    items = await store.read(dataset_items, dataset_id)
    return DatasetDetail.of_row(dataset, items=[DatasetItem.of_row(i) for i in items])


async def experiment_list(store: Store, dataset_id: int | None = None) -> ExperimentList:
    """Experiments newest first, of one dataset if given."""
    rows = await store.read(list_experiments, dataset_id)
    return ExperimentList(experiments=[Experiment.of_row(e) for e in rows])


async def experiment_detail(
    store: Store, experiment_id: int, item_id: int | None = None
) -> ExperimentDetail | None:
    """An experiment with its items (or the one item that just changed) and metric summary."""
    experiment = await store.read(get_experiment, experiment_id)
    if experiment is None:
        return None
    items = await store.read(experiment_items, experiment_id, item_id)
    metrics = await store.read(metric_summary, experiment_id)
    return ExperimentDetail.of_row(
        experiment,
        items=[experiment_item(i) for i in items],
        metrics=[MetricSummary.of_row(m) for m in metrics],
    )


async def experiment_comparison(store: Store, a: int, b: int) -> Comparison:
    """Two experiments side by side; LookupError if one does not exist."""
    try:
        return comparison(await store.read(compare_experiments, a, b))
    except ValueError as exc:  # different datasets
        raise InputError(str(exc)) from None


def page_view(detail: ExperimentDetail) -> dict[str, Any]:
    """The experiment page's template context: the experiment, its items, its metrics."""
    data = msgspec.to_builtins(detail)
    items, metrics = data.pop("items"), data.pop("metrics")
    return {"experiment": data, "items": items, "metrics": metrics}
