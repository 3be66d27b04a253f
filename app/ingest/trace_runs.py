"""The run an OTLP trace becomes, while a batch of its spans or logs is written.

Each trace is one run (``source = 'otlp'``), found through ``otlp_traces``
or opened by the first batch that names the trace. A run is labelled by its
root span's name (by its first span's until the root arrives), so a trace
without a prompt still has a name on every list; its ``run_created`` notice
carries the row as the whole batch left it.

Writes happen on the one writer thread, where every statement delays every
other writer: a :class:`TraceRun` reads what the batch needs of its run once
(sequence number, parameters, provider, whether it has a prompt, whether it
ended) and keeps it current as the batch goes, so spans do not re-read the
run row, and updates that cannot change anything are not sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlite_utils import Database

from app.ingest import normalize, semconv
from app.ingest.decode import SpanRecord
from app.store import Store
from app.store.events import TOTALS_EVENTS, record_event
from app.store.live import RUN_CREATED_SEQ, Broker, LiveEvent
from app.store.rows import encode_json, json_object
from app.store.run_patch import RunPatch
from app.store.runs import get_run
from app.store.statuses import QUEUED, TERMINAL

# A run's label (its root span's name) is shown where a prompt would be.
LABEL_CHARS = 200
# A prompt is kept up to this many characters.
PROMPT_CHARS = 100_000
# Ids per ``in (...)`` list: well under SQLite's limit on bound variables.
CHUNK = 500

# What a batch needs to know of a trace's run, in one query for all its traces.
_TRACES = (
    "select t.trace_id, t.run_id, t.root_span_id, t.messages_seen, t.conversation_id,"
    " r.last_seq, r.params, r.provider, r.status,"
    " coalesce(r.prompt, '') != '' as has_prompt"
    " from otlp_traces t join runs r on r.id = t.run_id where t.trace_id in ({})"
)
_NEW_RUN = (
    "insert into runs (id, status, model, provider, source, started_at, trace_id, params, label)"
    " values (?, ?, ?, ?, 'otlp', ?, ?, '{}', ?)"
)
_NEW_TRACE = (
    "insert into otlp_traces (trace_id, run_id, service_name, messages_seen, created_at)"
    " values (?, ?, ?, 0, ?)"
)


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    runs: list[str] = field(default_factory=list)
    events: list[LiveEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Prices looked up by this write (``app.pricing.tables.lookup``), shared by its traces.
    prices: dict[Any, Any] = field(default_factory=dict)


def chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def placeholders(items: list[Any]) -> str:
    return ", ".join("?" * len(items))


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
        self.seq: int = row.get("last_seq") or 0
        self.params = json_object(row.get("params"))
        self.provider: str | None = row.get("provider")
        self.has_prompt = bool(row.get("has_prompt"))
        self.ended = row.get("status") in TERMINAL
        # Span ids of this trace with log records not yet read (filled per batch).
        self.waiting_logs: set[str] = set()
        # This batch's last event after which the run row changed (see ``announce``).
        self.last_totals: int | None = None
        # The run row's changes and the event rows of this batch, written by ``save``.
        self.patch = RunPatch(self.run_id, result.prices)

    def emit(self, payload: dict[str, Any]) -> None:
        self.seq += 1
        stored, run = record_event(
            self.db, self.run_id, self.seq, payload, run_row=False, patch=self.patch
        )
        if payload["type"] in TOTALS_EVENTS:
            self.last_totals = len(self.result.events)
        self.result.events.append(LiveEvent(self.run_id, self.seq, payload["type"], stored, run))

    def set_prompt(self, text: str | None) -> None:
        """The run's prompt, if it has none yet (the first user message or the root's input)."""
        if text and not self.has_prompt:
            self.patch.set(prompt=text[:PROMPT_CHARS])
            self.has_prompt = True

    def merge_params(self, learned: dict[str, Any]) -> None:
        """Add parameters the run does not have yet (those it has win)."""
        merged = {**learned, **self.params}
        if merged != self.params:
            self.params = merged
            self.patch.set(params=encode_json(merged))

    def save(self) -> None:
        self.db.execute(
            "update otlp_traces set root_span_id = ?, messages_seen = ? where trace_id = ?",
            [self.root_span_id, self.messages_seen, self.trace_id],
        )
        # Once per trace and batch, not once per event: the rollup triggers run once.
        self.patch.write(self.db)


def find_traces(db: Database, trace_ids: list[str], result: IngestResult) -> dict[str, TraceRun]:
    """The runs the given traces already became, by trace id (one query per 500 traces)."""
    found: dict[str, TraceRun] = {}
    for ids in chunks(trace_ids):
        for row in db.execute(_TRACES.format(placeholders(ids)), ids):
            found[row["trace_id"]] = TraceRun(db, dict(row), result)
    return found


def find_trace(db: Database, trace_id: str, result: IngestResult) -> TraceRun | None:
    """The run a trace already became, if any."""
    return find_traces(db, [trace_id], result).get(trace_id)


def waiting_logs(db: Database, traces: dict[str, TraceRun]) -> None:
    """Note on each trace the spans that have log records not yet read (usually none)."""
    ids = list(traces)
    for part in chunks(ids):
        for trace_id, span_id in db.execute(
            "select distinct trace_id, span_id from otlp_logs"
            f" where applied = 0 and trace_id in ({placeholders(part)})",
            part,
        ):
            traces[trace_id].waiting_logs.add(span_id)


def open_trace(db: Database, spans: list[SpanRecord], result: IngestResult) -> TraceRun:
    """A new run for the trace of ``spans`` (which no run has yet)."""
    trace_id = spans[0].trace_id
    llm = next((s for s in spans if semconv.kind_of(s) == semconv.LLM), None)
    service = normalize.name(spans[0].resource.get("service.name") or "otlp", 200)
    model = semconv.model_of(llm) if llm else service
    provider = semconv.provider_of(llm) if llm else "otlp"
    started = min(s.start for s in spans)
    run_id = uuid.uuid4().hex[:16]
    # Until the root span arrives (exporters send children first), its first span names the run.
    root = next((s for s in spans if s.is_root), spans[0])
    db.execute(
        _NEW_RUN, [run_id, QUEUED, model, provider, started, trace_id, root.name[:LABEL_CHARS]]
    )
    # Its row is filled in once the batch is recorded (see ``announce``).
    created_event = len(result.events)
    result.events.append(LiveEvent(run_id, RUN_CREATED_SEQ, "run_created", {}, None))
    db.execute(_NEW_TRACE, [trace_id, run_id, service, time.time()])
    params = {"trace_id": trace_id, "service": service, **(semconv.params_of(llm) if llm else {})}
    trace = TraceRun(
        db,
        {"trace_id": trace_id, "run_id": run_id, "params": params, "provider": provider},
        result,
    )
    trace.created_event = created_event
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
    return trace


def adopt_logs(db: Database, trace: TraceRun) -> None:
    """Log records that came before any span of a new trace now have its run."""
    if trace.waiting_logs:
        db.execute(
            "update otlp_logs set run_id = ? where trace_id = ? and run_id is null",
            [trace.run_id, trace.trace_id],
        )


def announce(db: Database, trace: TraceRun) -> None:
    """Give the batch's ``run_created`` notice and its last totals event the run row as the
    batch left it, read once.

    Live run lists render a new row from ``run_created``: it must carry the
    prompt (or label), model and status, not the bare row first inserted.
    The batch's events are published together after the commit, so the
    row of its last totals event is the one a live page keeps.
    """
    marked = [i for i in (trace.created_event, trace.last_totals) if i is not None]
    if not marked:
        return
    run = get_run(db, trace.run_id)
    events = trace.result.events
    for i in marked:
        events[i] = replace(events[i], run=run)


async def write_and_publish(
    store: Store,
    broker: Broker,
    write: Callable[[Database, list[Any]], IngestResult],
    items: list[Any],
) -> IngestResult:
    """Write a batch (spans or log records) through the group-commit writer, then publish.

    ``store.write`` answers once the batch it joined is durable: live viewers
    hear of nothing before the commit, so what they see is durable.
    """
    result = await store.write(write, items)
    for event in result.events:
        broker.publish(event)
    return result
