"""A run's trace as ``/runs/{id}/trace`` shows it and ``GET /api/runs/{id}/spans`` returns it.

``run_trace`` reads the spans and their log records once, in tree order with
each span's depth; the API returns its spans as they are, the trace card
adds what a person needs to read them (indent, waterfall bar, duration,
failure mark) with ``trace_card``. ``span_detail`` is the detail panel
and its full page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast
from urllib.parse import quote

from litestar.exceptions import NotFoundException

from app.core.formats import number
from app.store import Store
from app.store.statuses import TERMINAL
from app.traces import queries
from app.traces.display import pairs, value_view
from app.traces.tree import Timeline, duration_ms, error_text, is_failed, kind_class, tree_order
from app.web.deps import existing_run

# A tree longer than this shows its first rows and says so; the JSON API has all.
MAX_ROWS = 2000
# Deeper spans are indented no further, so names stay readable.
MAX_INDENT = 10
# Log records and events shown in one span's detail.
MAX_DETAIL_ITEMS = 500


class LogRecord(TypedDict):
    """A row of ``otlp_logs``: an OTLP log record kept on its span (``body`` is any JSON value)."""

    id: int
    trace_id: str | None
    span_id: str | None
    run_id: str | None
    at: float | None
    observed_at: float | None
    severity_number: int | None
    severity_text: str | None
    event_name: str | None
    body: Any
    attributes: dict[str, Any] | None
    resource: dict[str, Any] | None
    scope: dict[str, Any] | None
    applied: int | None
    received_at: float | None


class TraceSpan(TypedDict):
    """A row of ``spans`` with its JSON cells decoded (a corrupt cell is null), its ``depth``
    in the tree (0: top level) and its log records. Rows recorded before spans were kept
    whole have null ``span_kind``, ``events``, ``links``, ``resource`` and ``scope``."""

    id: int
    run_id: str
    trace_id: str | None
    span_id: str | None
    parent_span_id: str | None
    kind: str | None
    span_kind: str | None
    name: str | None
    start_at: float | None
    end_at: float | None
    status: str | None
    status_message: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    attributes: dict[str, Any] | None
    events: list[dict[str, Any]] | None
    links: list[dict[str, Any]] | None
    resource: dict[str, Any] | None
    scope: dict[str, Any] | None
    depth: int
    logs: list[LogRecord]


@dataclass
class RunTrace:
    run: dict[str, Any]
    spans: list[TraceSpan]
    # Records naming a span of the trace that is not stored (yet).
    stray_logs: list[dict[str, Any]] = field(default_factory=list)


def _read_trace(db: Any, run_id: str, trace_id: str | None) -> tuple[list, list]:
    return queries.run_spans(db, run_id), queries.run_logs(db, run_id, trace_id)


async def run_trace(store: Store, run_id: str) -> RunTrace:
    """The run's spans in tree order, each with its depth and logs; a 404 without the run."""
    run = await existing_run(store, run_id)
    trace_id = run.get("trace_id")
    spans, logs = await store.read(
        _read_trace, run_id, trace_id if isinstance(trace_id, str) else None
    )
    by_span: dict[str, list[dict[str, Any]]] = {}
    for log in logs:
        by_span.setdefault(str(log.get("span_id") or ""), []).append(log)
    ordered = []
    for span, depth in tree_order(spans):
        key = span.get("span_id")
        own = by_span.pop(key, []) if isinstance(key, str) and key else []
        ordered.append(cast(TraceSpan, {**span, "depth": depth, "logs": own}))
    stray = [log for records in by_span.values() for log in records]
    return RunTrace(run=run, spans=ordered, stray_logs=stray)


def span_href(run_id: str, span_id: Any) -> str | None:
    """The detail URL of a span; ids are untrusted text, so every character is escaped.

    None for an id no path can carry: the router decodes ``%2F`` before it
    matches, and browsers resolve ``.`` and ``..`` however they are escaped.
    """
    if not isinstance(span_id, str) or not span_id or "/" in span_id or span_id in (".", ".."):
        return None
    return f"/runs/{quote(run_id, safe='')}/spans/{quote(span_id, safe='')}"


def _row(run_id: str, span: TraceSpan, timeline: Timeline | None) -> dict[str, Any]:
    start = number(span.get("start_at"))
    return {
        "span": span,
        "depth": span["depth"],
        "indent": min(span["depth"], MAX_INDENT),
        "bar": timeline.bar(cast(dict, span)) if timeline else None,
        "offset_ms": (float(start) - timeline.start) * 1000
        if timeline and start is not None
        else None,
        "duration_ms": duration_ms(cast(dict, span)),
        "failed": is_failed(cast(dict, span)),
        "error": error_text(cast(dict, span)),
        "kind_class": kind_class(cast(dict, span)),
        "href": span_href(run_id, span.get("span_id")),
        "logs": len(span["logs"]),
    }


def trace_card(trace: RunTrace, now: float | None = None) -> dict[str, Any]:
    """Context of the trace card: a row per span (at most ``MAX_ROWS``) with its bar."""
    run = trace.run
    live = run.get("status") not in TERMINAL
    timeline = Timeline.of(cast(list, trace.spans), (now or time.time()) if live else None)
    shown = trace.spans[:MAX_ROWS]
    return {
        "run": run,
        "trace": {
            "rows": [_row(run["id"], span, timeline) for span in shown],
            "total": len(trace.spans),
            "capped": len(trace.spans) > len(shown),
            "failed": sum(1 for s in trace.spans if is_failed(cast(dict, s))),
            "duration_ms": (timeline.end - timeline.start) * 1000 if timeline else None,
            "stray_logs": len(trace.stray_logs),
            "live": live,
        },
    }


def _events(value: Any) -> list[dict[str, Any]]:
    """Span events (or links) as shown: each with its fields and attributes; any shape."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items[:MAX_DETAIL_ITEMS]:
        if isinstance(item, dict):
            rest = {k: v for k, v in item.items() if k != "attributes"}
            out.append({"fields": rest, "attributes": pairs(item.get("attributes"))})
        else:
            out.append({"fields": {}, "attributes": pairs(item)})
    return out


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list) else (0 if value is None else 1)


def _log_view(log: dict[str, Any]) -> dict[str, Any]:
    return {
        "log": log,
        "body": value_view(log.get("body")) if log.get("body") is not None else None,
        "attributes": pairs(log.get("attributes")),
    }


async def span_detail(store: Store, run_id: str, span_id: str) -> dict[str, Any]:
    """Everything about one span: fields, attributes, events, links, resource, scope, logs."""
    run = await existing_run(store, run_id)
    span = await store.read(queries.get_span, run_id, span_id)
    if span is None:
        raise NotFoundException(f"span {span_id!r} not found in run {run_id!r}")
    trace_id = run.get("trace_id") if isinstance(run.get("trace_id"), str) else None
    logs = await store.read(queries.span_logs, run_id, trace_id, span_id)
    scope = span.get("scope")
    parent = span.get("parent_span_id")
    has_parent = isinstance(parent, str) and parent and parent != span_id
    parent_row = await store.read(queries.get_span, run_id, parent) if has_parent else None
    return {
        "run": run,
        "span": span,
        "failed": is_failed(span),
        "error": error_text(span),
        "kind_class": kind_class(span),
        "duration_ms": duration_ms(span),
        "parent": parent_row,
        "parent_href": span_href(run["id"], parent) if parent_row else None,
        "attributes": pairs(span.get("attributes")),
        "resource": pairs(span.get("resource")),
        "scope": scope if isinstance(scope, dict) else None,
        "scope_attributes": pairs(scope.get("attributes")) if isinstance(scope, dict) else [],
        "scope_other": value_view(scope)
        if scope is not None and not isinstance(scope, dict)
        else None,
        "events": _events(span.get("events")),
        "events_total": _count(span.get("events")),
        "links": _events(span.get("links")),
        "links_total": _count(span.get("links")),
        "logs": [_log_view(log) for log in logs[:MAX_DETAIL_ITEMS]],
        "logs_total": len(logs),
        "live": run.get("status") not in TERMINAL,
        "nav": "runs",
    }
