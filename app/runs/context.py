"""What the runs pages and their JSON twins show, built once for both.

``GET /runs`` renders ``run_list`` and ``GET /api/runs`` returns it; the same
for ``run_detail_or_404`` and ``/runs/{id}`` / ``GET /api/runs/{id}``.

Envelopes assembled here are msgspec Structs. Rows read from the store pass
through as they are, described by TypedDicts: the OpenAPI schema names their
columns, and no odd value in a stored row (ingested from any agent) can make
an answer fail on its way out.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

import msgspec
from litestar.exceptions import NotFoundException

from app.runs.filters import RunFilter, count_filtered, filtered_runs
from app.store import Store
from app.store.runs import run_detail


class RunRow(TypedDict):
    """A row of ``runs``; ``params`` holds the settings it ran with (free-form)."""

    id: str
    session_id: str | None
    parent_run_id: str | None
    parent_kind: str | None
    status: str
    model: str | None
    provider: str | None
    params: dict[str, Any] | None
    prompt: str | None
    response: str | None
    started_at: float
    ended_at: float | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    cost_status: str | None
    extra_cost_usd: float
    usage_unknown_calls: int
    tool_calls: int | None
    tool_errors: int | None
    error: str | None
    source: str | None
    last_seq: int | None
    owner: str | None
    label: str | None
    trace_id: str | None
    pinned_at: float | None  # kept whatever AGENTOP_RETENTION_DAYS says


class MessageRow(TypedDict):
    id: int
    run_id: str
    seq: int | None
    role: str | None
    content: str | None
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    name: str | None
    at: float | None


class ToolCallRow(TypedDict):
    id: int
    run_id: str
    call_id: str | None
    seq: int | None
    name: str | None
    arguments: dict[str, Any] | None
    result: str | None
    error: str | None
    status: str | None
    latency_ms: float | None
    cost_usd: float | None
    cost_lines: list[dict[str, Any]] | None
    started_at: float | None
    ended_at: float | None


class SpanRow(TypedDict):
    id: int
    run_id: str
    span_id: str | None
    parent_span_id: str | None
    kind: str | None
    name: str | None
    start_at: float | None
    end_at: float | None
    status: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    attributes: dict[str, Any] | None
    trace_id: str | None
    span_kind: str | None
    status_message: str | None
    events: list[dict[str, Any]] | None
    links: list[dict[str, Any]] | None
    resource: dict[str, Any] | None
    scope: dict[str, Any] | None


class RunDetail(TypedDict):
    """A run with its messages, tool calls and spans."""

    run: RunRow
    messages: list[MessageRow]
    tool_calls: list[ToolCallRow]
    spans: list[SpanRow]


class RunList(msgspec.Struct):
    """A page of runs, newest first. A filtered ``total`` is counted up to
    ``COUNT_CAP``; ``total_capped`` says there are more."""

    runs: list[RunRow]
    total: int
    total_capped: bool
    limit: int
    offset: int
    filters: dict[str, str]


async def run_list(store: Store, filters: RunFilter, limit: int, offset: int) -> RunList:
    runs = await store.read(filtered_runs, filters, limit, offset)
    total, capped = await store.read(count_filtered, filters)
    return RunList(
        runs=cast(list[RunRow], runs),
        total=total,
        total_capped=capped,
        limit=limit,
        offset=offset,
        filters=filters.query_params(),
    )


async def run_detail_or_404(store: Store, run_id: str) -> RunDetail:
    detail = await store.read(run_detail, run_id)
    if detail is None:
        raise NotFoundException(f"run {run_id!r} not found")
    return cast(RunDetail, detail)
