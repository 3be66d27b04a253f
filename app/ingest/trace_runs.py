"""The run an OTLP trace becomes, while a batch of its spans or logs is written.

Each trace is one run (``source = 'otlp'``), found through ``otlp_traces``
or opened by the first batch that names the trace. A run is labelled by its
root span's name (by its first span's until the root arrives), so a trace
without a prompt still has a name on every list; its ``run_created`` notice
carries the row as the whole batch left it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlite_utils import Database

from app.ingest import normalize, semconv
from app.ingest.decode import SpanRecord
from app.store import Store
from app.store.events import TOTALS_EVENTS, record_event
from app.store.live import RUN_CREATED_SEQ, Broker, LiveEvent
from app.store.runs import create_run, get_run

# A run's label (its root span's name) is shown where a prompt would be.
LABEL_CHARS = 200


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    runs: list[str] = field(default_factory=list)
    events: list[LiveEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class TraceRun:
    """The run behind one trace, while a batch is being written."""

    def __init__(self, db: Database, row: dict[str, Any], result: IngestResult) -> None:
        self.db = db
        self.trace_id = row["trace_id"]
        self.run_id = row["run_id"]
        self.root_span_id = row.get("root_span_id")
        self.messages_seen = row.get("messages_seen") or 0
        self.conversation_id = row.get("conversation_id")
        self.result = result
        # Where this batch's ``run_created`` notice is, for a run opened by this batch.
        self.created_event: int | None = None
        self.seq = db.execute("select last_seq from runs where id = ?", [self.run_id]).fetchone()[0]

    def emit(self, payload: dict[str, Any]) -> None:
        self.seq += 1
        stored, run = record_event(self.db, self.run_id, self.seq, payload)
        if run is None and payload["type"] in TOTALS_EVENTS:
            run = get_run(self.db, self.run_id)
        self.result.events.append(LiveEvent(self.run_id, self.seq, payload["type"], stored, run))

    def save(self) -> None:
        self.db.execute(
            "update otlp_traces set root_span_id = ?, messages_seen = ? where trace_id = ?",
            [self.root_span_id, self.messages_seen, self.trace_id],
        )


def find_trace(db: Database, trace_id: str, result: IngestResult) -> TraceRun | None:
    """The run a trace already became, if any."""
    row = db.execute("select * from otlp_traces where trace_id = ?", [trace_id]).fetchone()
    return None if row is None else TraceRun(db, dict(row), result)


def open_trace(db: Database, spans: list[SpanRecord], result: IngestResult) -> TraceRun:
    trace_id = spans[0].trace_id
    found = find_trace(db, trace_id, result)
    if found is not None:
        return found
    llm = next((s for s in spans if semconv.kind_of(s) == semconv.LLM), None)
    service = normalize.name(spans[0].resource.get("service.name") or "otlp", 200)
    model = semconv.model_of(llm) if llm else service
    provider = semconv.provider_of(llm) if llm else "otlp"
    started = min(s.start for s in spans)
    run_id = uuid.uuid4().hex[:16]
    # Until the root span arrives (exporters send children first), its first span names the run.
    root = next((s for s in spans if s.is_root), spans[0])
    create_run(
        db,
        {
            "id": run_id,
            "model": model,
            "provider": provider,
            "source": "otlp",
            "started_at": started,
            "trace_id": trace_id,
            "params": {},
            "label": root.name[:LABEL_CHARS],
        },
    )
    # Its row is filled in once the batch is recorded (see ``announce``).
    created_event = len(result.events)
    result.events.append(LiveEvent(run_id, RUN_CREATED_SEQ, "run_created", {}, None))
    db.table("otlp_traces").insert(
        {
            "trace_id": trace_id,
            "run_id": run_id,
            "service_name": service,
            "messages_seen": 0,
            "created_at": time.time(),
        }
    )
    trace = TraceRun(db, {"trace_id": trace_id, "run_id": run_id}, result)
    trace.created_event = created_event
    params = {"trace_id": trace_id, "service": service, **(semconv.params_of(llm) if llm else {})}
    trace.emit(
        {
            "type": "run_started",
            "at": started,
            "model": model,
            "provider": provider,
            "params": params,
            "external_spans": True,
        }
    )
    # Log records that came before any span of this trace now have a run.
    db.execute(
        "update otlp_logs set run_id = ? where trace_id = ? and run_id is null", [run_id, trace_id]
    )
    return trace


def announce(db: Database, trace: TraceRun) -> None:
    """Give the ``run_created`` notice of a new run the row as the batch left it.

    Live run lists render a new row from this notice: it must carry the
    prompt (or label), model and status, not the bare row first inserted.
    """
    if trace.created_event is not None:
        events = trace.result.events
        events[trace.created_event] = replace(
            events[trace.created_event], run=get_run(db, trace.run_id)
        )


def set_prompt(db: Database, run_id: str, text: str | None) -> None:
    if text:
        db.execute(
            "update runs set prompt = ? where id = ? and (prompt is null or prompt = '')",
            [text[:100_000], run_id],
        )


async def write_and_publish(
    store: Store,
    broker: Broker,
    write: Callable[[Database, list[Any]], IngestResult],
    items: list[Any],
) -> IngestResult:
    """Write a batch (spans or log records) in one transaction, then publish its events.

    Live viewers hear of nothing before the commit: what they see is durable.
    """
    result = await store.write(write, items)
    for event in result.events:
        broker.publish(event)
    return result
