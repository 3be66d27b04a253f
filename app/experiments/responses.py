"""Response types of the datasets and experiments API, so the OpenAPI schema describes them.

Each is made from store rows with ``of_row`` (see ``app.evals.responses.Row``):
the declared keys, the values as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from app.evals.responses import Row


class Dataset(Row):
    id: int
    name: str
    description: str | None
    source: str  # csv | jsonl | runs | api
    item_count: int
    created_by: str | None
    created_at: float


class DatasetItem(Row):
    id: int
    dataset_id: int
    idx: int
    input: str
    expected: str | None
    metadata: dict[str, Any]  # extra CSV columns or JSONL keys; the source run's id and model


class DatasetDetail(Dataset):
    """A dataset with its items."""

    items: list[DatasetItem]


class DatasetList(msgspec.Struct, kw_only=True):
    datasets: list[Dataset]


class Experiment(Row):
    """An experiment with its running totals and the name of its dataset."""

    id: int
    name: str | None
    dataset_id: int
    status: str  # queued | running | succeeded | failed | interrupted
    config: dict[str, Any]  # model, temperature, max_tokens, system_prompt, tools, max_rounds
    evaluators: list[dict[str, Any]]  # {"name", "params"}
    concurrency: int
    total: int
    done: int
    failed: int
    passed: int
    scored: int
    cost_usd: float | None
    error: str | None
    created_by: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    dataset_name: str


class ItemEvaluation(Row):
    run_id: str
    metric: str
    value: float | None
    label: str | None
    passed: int | None  # 1 pass, 0 fail, none: no verdict
    comment: str | None


class ExperimentItem(Row):
    """One dataset item's run in an experiment: its outcome and evaluations."""

    id: int
    experiment_id: int
    item_id: int
    idx: int
    run_id: str | None
    status: str  # pending | running | succeeded | failed
    output: str | None
    error: str | None
    latency_ms: float | None
    cost_usd: float | None
    passed: int | None  # 1 when every verdict passed; none when nothing was judged
    input: str
    expected: str | None
    run_status: str | None
    evaluations: list[ItemEvaluation]


class MetricSummary(Row):
    """One metric over an experiment: how many scored, the mean, the pass rate (0-1)."""

    metric: str
    n: int
    mean: float | None
    passed: int | None
    judged: int
    pass_rate: float | None


class ExperimentDetail(Experiment):
    """An experiment with its items and per-metric summary."""

    items: list[ExperimentItem]
    metrics: list[MetricSummary]


class ExperimentList(msgspec.Struct, kw_only=True):
    experiments: list[Experiment]


class Flip(msgspec.Struct, kw_only=True):
    """An evaluator whose verdict differs between A and B (True = pass)."""

    metric: str
    a: bool
    b: bool


class ComparedItem(Row):
    """One dataset item in two experiments; ``change`` is B against A, read from each
    evaluator's verdict, and ``flips`` names the evaluators that changed."""

    idx: int
    input: str
    expected: str | None
    a: ExperimentItem | None
    b: ExperimentItem | None
    change: Literal["better", "worse", "mixed", "same", "unknown"]
    flips: list[Flip]


class ComparedMetric(Row):
    metric: str
    a: MetricSummary | None
    b: MetricSummary | None


class Comparison(msgspec.Struct, kw_only=True):
    """Two experiments over one dataset, item by item and metric by metric."""

    a: Experiment
    b: Experiment
    rows: list[ComparedItem]
    metrics: list[ComparedMetric]


def experiment_item(row: Mapping[str, Any]) -> ExperimentItem:
    return ExperimentItem.of_row(
        row, evaluations=[ItemEvaluation.of_row(e) for e in row["evaluations"]]
    )


def _maybe(row: Mapping[str, Any] | None, build: Any) -> Any:
    return None if row is None else build(row)


def comparison(data: Mapping[str, Any]) -> Comparison:
    """``compare_experiments`` as its response type."""
    return Comparison(
        a=Experiment.of_row(data["a"]),
        b=Experiment.of_row(data["b"]),
        rows=[
            ComparedItem.of_row(
                r,
                a=_maybe(r["a"], experiment_item),
                b=_maybe(r["b"], experiment_item),
                flips=[Flip(**flip) for flip in r["flips"]],
            )
            for r in data["rows"]
        ],
        metrics=[
            ComparedMetric.of_row(
                m, a=_maybe(m["a"], MetricSummary.of_row), b=_maybe(m["b"], MetricSummary.of_row)
            )
            for m in data["metrics"]
        ],
    )
