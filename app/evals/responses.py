"""Response types of the evaluations API, so the OpenAPI schema describes what comes back.

Rows are read from our own store and shown as stored (a hand-edited or old
database may hold odd values, and a page must still render them), so a row
becomes its Struct with ``of_row``, which fixes the keys without re-checking
the values. Chart data, aggregated from the same rows, is built the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import msgspec


class Row(msgspec.Struct, kw_only=True):
    """A response made from a store row: the declared fields, in order."""

    @classmethod
    def of_row(cls, row: Mapping[str, Any], **extra: Any) -> Self:
        fields = {name: row.get(name) for name in cls.__struct_fields__}
        return cls(**{**fields, **extra})


class Evaluation(Row):
    """One evaluation of a run; ``passed`` is the verdict (true, false, or none)."""

    id: int
    run_id: str
    metric: str
    value: float | None
    label: str | None
    comment: str | None
    source: str
    passed: bool | None
    created_by: str | None
    created_at: float
    experiment_id: int | None
    details: dict[str, Any] | None
    pinned_at: float | None = None  # keeps its run whatever AGENTOP_RETENTION_DAYS says


class ListedEvaluation(Evaluation, kw_only=True):
    """An evaluation in a list, with its run's model, session and prompt."""

    run_model: str | None
    run_session: str | None
    run_prompt: str | None


class EvaluationPage(msgspec.Struct, kw_only=True):
    evaluations: list[ListedEvaluation]
    limit: int
    offset: int


class EvaluationsRecorded(msgspec.Struct, kw_only=True):
    """What ``POST /api/evals/run`` recorded: one evaluation per evaluator."""

    evaluations: list[Evaluation]


class Series(msgspec.Struct, kw_only=True):
    name: str
    values: list[float | None]
    css: str
    texts: list[str]


class Tick(msgspec.Struct, kw_only=True):
    value: float
    text: str


class Chart(Row):
    """A chart's data: series aligned with ``labels``, axis maximum and ticks, formatted texts."""

    id: str
    title: str
    kind: str  # bar | line
    labels: list[str]
    series: list[Series]
    y_max: float
    ticks: list[Tick]
    empty: bool
    note: str
    total_text: str


class MetricMean(msgspec.Struct, kw_only=True):
    mean: float | None
    n: int


class Breakdown(Row):
    """One model's or session's runs, success rate, evaluation pass rate and metric means."""

    g: str
    runs: int
    ok: int | None
    ended: int | None
    latency: float | None
    cost: float | None
    success_rate: float | None
    judged: int
    passed: int
    pass_rate: float | None
    metrics: dict[str, MetricMean]


class EvalBreakdowns(msgspec.Struct, kw_only=True):
    """What the /evals page shows: success and metrics over time, per model and per session."""

    range: str
    success: Chart
    metrics: list[Chart]
    by_model: list[Breakdown]
    by_session: list[Breakdown]


class EvalSummary(EvalBreakdowns, kw_only=True):
    """``GET /api/evals/summary``: the page's breakdowns and the runs charts of the same range."""

    runs: list[Chart]


def chart(data: Mapping[str, Any]) -> Chart:
    """``Chart.finish()`` of ``app.dashboard.charts`` as its response type."""
    return Chart.of_row(
        data,
        series=[Series(**s) for s in data["series"]],
        ticks=[Tick(**t) for t in data["ticks"]],
    )


def breakdown_group(data: Mapping[str, Any]) -> Breakdown:
    """One group of ``app.dashboard.charts.breakdown`` as its response type."""
    return Breakdown.of_row(
        data, metrics={name: MetricMean(**m) for name, m in data["metrics"].items()}
    )
