"""A run's spans as a tree, and where each one sits on the trace's time line.

Order: depth first, children by start time. A span whose parent is not
stored (not arrived yet, or dropped by the exporter) is shown at the top
level rather than hidden; so is any span caught in a parent cycle. Nothing
here recurses, so a chain thousands of spans deep is fine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.core.formats import number

# Statuses that mean the span failed: OTLP "error", and run statuses kept on old rows.
FAILED = frozenset({"error", "failed", "interrupted"})
KINDS = frozenset({"agent", "llm", "tool"})
# Narrowest bar drawn, in percent of the trace, so an instant span stays visible.
MIN_WIDTH = 0.4


def _key(span: dict[str, Any]) -> str | None:
    value = span.get("span_id")
    return value if isinstance(value, str) and value else None


def _parent(span: dict[str, Any]) -> str | None:
    value = span.get("parent_span_id")
    return value if isinstance(value, str) and value else None


def _start(span: dict[str, Any]) -> float:
    start = number(span.get("start_at"))
    return float("inf") if start is None else float(start)


def tree_order(spans: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Every span once, with its depth, depth first; siblings by start time then row id."""
    ordered = sorted(spans, key=lambda s: (_start(s), number(s.get("id")) or 0))
    by_id: dict[str, dict[str, Any]] = {}
    for span in ordered:
        key = _key(span)
        if key is not None:
            by_id.setdefault(key, span)  # a duplicate id: the first stored is the parent
    children: dict[int, list[dict[str, Any]]] = {}
    roots = []
    for span in ordered:
        parent = _parent(span)
        if parent is None or parent not in by_id or by_id[parent] is span:
            roots.append(span)
        else:
            children.setdefault(id(by_id[parent]), []).append(span)

    out: list[tuple[dict[str, Any], int]] = []
    seen: set[int] = set()

    def walk(top: dict[str, Any]) -> None:
        stack = [(top, 0)]
        while stack:
            span, depth = stack.pop()
            if id(span) in seen:
                continue
            seen.add(id(span))
            out.append((span, depth))
            # Reversed onto the stack so the earliest child comes out first.
            stack.extend((c, depth + 1) for c in reversed(children.get(id(span), [])))

    for root in roots:
        walk(root)
    for span in ordered:  # only spans in a parent cycle are left: show them, at the top
        if id(span) not in seen:
            walk(span)
    return out


@dataclass(frozen=True)
class Timeline:
    """The trace's time span: first start to last end (running spans: to ``now``)."""

    start: float
    end: float

    @classmethod
    def of(cls, spans: Iterable[dict[str, Any]], now: float | None) -> Timeline | None:
        starts, ends = [], []
        for span in spans:
            start = number(span.get("start_at"))
            if start is None:
                continue
            starts.append(float(start))
            end = number(span.get("end_at"))
            ends.append(float(end) if end is not None else float(start))
        if not starts:
            return None
        last = max(ends)
        # A running span reaches to now; in a run that ended, to the latest end.
        return cls(min(starts), max(last, now) if now is not None else last)

    def span_end(self, span: dict[str, Any]) -> float | None:
        end = number(span.get("end_at"))
        return float(end) if end is not None else None

    def bar(self, span: dict[str, Any]) -> tuple[float, float] | None:
        """``(left, width)`` of the span's bar in percent; None without a start."""
        start = number(span.get("start_at"))
        if start is None:
            return None
        end = self.span_end(span)
        if end is None:
            end = self.end  # still running (or cut off): up to the end of the view
        total = self.end - self.start
        if not 0 < total < float("inf"):  # every span at one instant (or absurd times)
            return 0.0, 100.0
        left = min(max((float(start) - self.start) / total * 100, 0.0), 100.0 - MIN_WIDTH)
        width = max((max(end, float(start)) - float(start)) / total * 100, MIN_WIDTH)
        return round(left, 3), round(min(width, 100.0 - left), 3)


def duration_ms(span: dict[str, Any]) -> float | None:
    start, end = number(span.get("start_at")), number(span.get("end_at"))
    if start is None or end is None:
        return None
    return max(float(end) - float(start), 0.0) * 1000


def is_failed(span: dict[str, Any]) -> bool:
    status = span.get("status")
    return isinstance(status, str) and status.lower() in FAILED


def kind_class(span: dict[str, Any]) -> str:
    kind = span.get("kind")
    return kind if isinstance(kind, str) and kind in KINDS else "other"


def error_text(span: dict[str, Any]) -> str | None:
    """Why a span failed: its status message, else the error old rows kept in attributes."""
    message = span.get("status_message")
    if isinstance(message, str) and message.strip():
        return message
    attributes = span.get("attributes")
    if isinstance(attributes, dict):
        error = attributes.get("error") or attributes.get("exception.message")
        if error is not None and error != "":
            return error if isinstance(error, str) else str(error)
    return None
