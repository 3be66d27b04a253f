"""OTLP log records: kept on the span they name; GenAI events become the run's messages.

The GenAI semantic conventions put message content in log records rather
than on spans: one event per message (``gen_ai.user.message`` …
``gen_ai.choice``) or one ``gen_ai.client.inference.operation.details``
event per call. Every record is stored in ``otlp_logs`` with its trace and
span ids, so the trace view shows it on its span. Exporters send logs and
spans in separate batches, in either order:

- a record whose span is already stored is read at once, and its messages
  are added to the run;
- a record that comes first waits (``applied = 0``) and is read when its
  span arrives (``app.ingest.otlp``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from sqlite_utils import Database

from app.ingest import messages, normalize
from app.ingest.decode import any_value, attributes, hex_id, scoped
from app.ingest.thread import pending_logs, record_messages
from app.ingest.trace_runs import IngestResult, find_trace
from app.store.rows import encode_json


@dataclass
class LogRecord:
    trace_id: str  # "" outside a trace
    span_id: str
    at: float
    observed_at: float
    severity_number: int
    severity_text: str
    event_name: str
    body: Any
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)


def logs_of(request: ExportLogsServiceRequest) -> tuple[list[LogRecord], list[str]]:
    """The valid log records of a request, and a reason for each rejected one."""
    records: list[LogRecord] = []
    rejected: list[str] = []
    for resource, scope, record in scoped(request.resource_logs, "scope_logs", "log_records"):
        if record.trace_id and len(record.trace_id) != 16:
            rejected.append("log record: invalid trace_id")
            continue
        if record.span_id and len(record.span_id) != 8:
            rejected.append("log record: invalid span_id")
            continue
        attrs = attributes(record.attributes)
        at_ns = record.time_unix_nano or record.observed_time_unix_nano or time.time_ns()
        records.append(
            LogRecord(
                trace_id=hex_id(record.trace_id),
                span_id=hex_id(record.span_id),
                at=at_ns / 1e9,
                observed_at=(record.observed_time_unix_nano or at_ns) / 1e9,
                severity_number=int(record.severity_number),
                severity_text=normalize.name(record.severity_text, 100),
                # The field is recent; older SDKs name the event in an attribute.
                event_name=normalize.name(record.event_name or attrs.get("event.name") or "", 200),
                body=any_value(record.body),
                attributes=attrs,
                resource=resource,
                scope=scope,
            )
        )
    return records, rejected


def _insert(db: Database, record: LogRecord, run_id: str | None, received_at: float) -> None:
    db.execute(
        "insert into otlp_logs (trace_id, span_id, run_id, at, observed_at, severity_number,"
        " severity_text, event_name, body, attributes, resource, scope, applied, received_at)"
        " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        [
            record.trace_id,
            record.span_id,
            run_id,
            record.at,
            record.observed_at,
            record.severity_number,
            record.severity_text,
            record.event_name,
            encode_json(record.body),
            encode_json(record.attributes),
            encode_json(record.resource),
            encode_json(record.scope),
            received_at,
        ],
    )


def ingest_log_records(db: Database, records: list[LogRecord]) -> IngestResult:
    """Store a batch of log records and apply those whose span is known (writer thread)."""
    result = IngestResult()
    now = time.time()
    spans_named: dict[str, set[str]] = defaultdict(set)
    runs: dict[str, str | None] = {}
    for record in records:
        if record.trace_id not in runs:
            row = db.execute(
                "select run_id from otlp_traces where trace_id = ?", [record.trace_id]
            ).fetchone()
            runs[record.trace_id] = row[0] if row else None
        _insert(db, record, runs[record.trace_id], now)
        result.accepted += 1
        if record.trace_id and record.span_id and runs[record.trace_id]:
            spans_named[record.trace_id].add(record.span_id)
    for trace_id, span_ids in spans_named.items():
        trace = find_trace(db, trace_id, result)
        if trace is None:
            continue
        trace.waiting_logs = set(span_ids)
        result.runs.append(trace.run_id)
        stored = db.execute(
            "select span_id, start_at, end_at from spans where run_id = ? and span_id in"
            f" ({', '.join('?' * len(span_ids))}) order by start_at",
            [trace.run_id, *span_ids],
        ).fetchall()
        # Calls in the order they happened: each repeats the conversation before it.
        for span_id, start, end in stored:
            inputs, outputs = messages.event_messages(pending_logs(db, trace, span_id))
            record_messages(db, trace, start, end or start, inputs, outputs)
        trace.save()
    return result
