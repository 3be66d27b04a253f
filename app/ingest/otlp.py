"""Turn OTLP spans into runs through the same event log as native runs.

Each trace becomes one run (``source = 'otlp'``). Its spans become the
events a native run would have emitted — ``run_started``, ``message``,
``tool_call_started``/``finished``, ``llm_call_finished``, and
``run_finished``/``run_failed`` when the root span arrives — so the
projection fills messages, tool calls, spans, tokens and cost, and the live
pages stream an ingested run exactly like a native one.

A run is labelled by its root span's name (by its first span's until the
root arrives), so a trace without a prompt still has a name on every list;
its ``run_created`` notice carries the row as the whole batch left it. An
LLM span with no usage records unknown tokens (None), and a span with
status ERROR a failed call, with its message.

A whole export request is one transaction on the writer thread: the
response is sent only after it committed, so an accepted span is a durable
span. Exporters retry, so a span already recorded is skipped.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from sqlite_utils import Database

from app.ingest import semconv
from app.ingest.decode import SpanRecord
from app.store import Store
from app.store.events import TERMINAL_EVENTS, TOTALS_EVENTS, record_event
from app.store.live import RUN_CREATED_SEQ, Broker, LiveEvent
from app.store.runs import create_run, get_run
from app.store.statuses import FAILED_LIKE, TERMINAL, sql_list

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


class _Trace:
    """The run behind one trace, while a batch is being written."""

    def __init__(self, db: Database, row: dict[str, Any], result: IngestResult) -> None:
        self.db = db
        self.trace_id = row["trace_id"]
        self.run_id = row["run_id"]
        self.root_span_id = row.get("root_span_id")
        self.messages_seen = row.get("messages_seen") or 0
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


def _open_trace(db: Database, spans: list[SpanRecord], result: IngestResult) -> _Trace:
    trace_id = spans[0].trace_id
    row = db.execute("select * from otlp_traces where trace_id = ?", [trace_id]).fetchone()
    if row is not None:
        return _Trace(db, dict(row), result)
    llm = next((s for s in spans if semconv.kind_of(s) == semconv.LLM), None)
    service = str(spans[0].resource.get("service.name") or "otlp")
    model = semconv.model_of(llm) if llm else service
    provider = semconv.provider_of(llm) if llm else "otlp"
    started = min(s.start for s in spans)
    session = next((semconv.session_of(s) for s in spans if semconv.session_of(s)), None)
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
            "session_id": session,
            "started_at": started,
            "params": {},
            "label": root.name[:LABEL_CHARS],
        },
    )
    # Its row is filled in once the batch is recorded (see ``_announce``).
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
    trace = _Trace(db, {"trace_id": trace_id, "run_id": run_id}, result)
    trace.created_event = created_event
    params = {"trace_id": trace_id, "service": service, **(semconv.params_of(llm) if llm else {})}
    trace.emit(
        {
            "type": "run_started",
            "at": started,
            "model": model,
            "provider": provider,
            "params": params,
        }
    )
    return trace


def _announce(db: Database, trace: _Trace) -> None:
    """Give the ``run_created`` notice of a new run the row as the batch left it.

    Live run lists render a new row from this notice: it must carry the
    prompt (or label), model and status, not the bare row first inserted.
    """
    if trace.created_event is not None:
        events = trace.result.events
        events[trace.created_event] = replace(
            events[trace.created_event], run=get_run(db, trace.run_id)
        )


def _seen(db: Database, trace: _Trace, span: SpanRecord) -> bool:
    if span.span_id == trace.root_span_id:
        return True
    return (
        db.execute(
            "select 1 from spans where run_id = ? and span_id = ?", [trace.run_id, span.span_id]
        ).fetchone()
        is not None
    )


def _parent(trace: _Trace, span: SpanRecord) -> str:
    if not span.parent_span_id or span.parent_span_id == trace.root_span_id:
        return "agent"
    return span.parent_span_id


def _set_prompt(db: Database, run_id: str, text: str | None) -> None:
    if text:
        db.execute(
            "update runs set prompt = ? where id = ? and (prompt is null or prompt = '')",
            [text[:100_000], run_id],
        )


def _join_session(db: Database, run_id: str, session: str) -> None:
    """Put a run that has no session yet into ``session`` (its id came on a later span).

    Session totals are kept by triggers on inserting runs (migration 0003),
    which a later ``session_id`` does not fire, so the run is added here.
    """
    changed = db.execute(
        "update runs set session_id = ? where id = ? and session_id is null", [session, run_id]
    ).rowcount
    if not changed or not db.table("run_sessions").exists():
        return
    db.execute(
        "insert or ignore into run_sessions (name, created_at, last_run_at)"
        " select ?, started_at, started_at from runs where id = ?",
        [session, run_id],
    )
    db.execute(
        f"""
        update run_sessions set
          runs = runs + 1,
          last_run_at = max(coalesce(last_run_at, 0), (select started_at from runs where id = :run)),
          input_tokens = input_tokens + (select input_tokens from runs where id = :run),
          output_tokens = output_tokens + (select output_tokens from runs where id = :run),
          cost_usd = cost_usd + (select cost_usd from runs where id = :run),
          finished = finished + (select status in {sql_list(TERMINAL)}
                                 from runs where id = :run),
          failed = failed + (select status in {sql_list(FAILED_LIKE)} from runs where id = :run)
        where name = :session
        """,
        {"run": run_id, "session": session},
    )


def _llm(db: Database, trace: _Trace, span: SpanRecord) -> None:
    inputs, outputs = semconv.messages_of(span)
    # Each call repeats the conversation so far: record only what is new.
    new = inputs[trace.messages_seen :] if len(inputs) > trace.messages_seen else inputs[-1:]
    for message in new:
        trace.emit({"type": "message", "at": span.start, **message})
    for message in outputs:
        trace.emit({"type": "message", "at": span.end, **message})
    trace.messages_seen = max(trace.messages_seen, len(inputs)) + len(outputs)
    _set_prompt(db, trace.run_id, next((m["content"] for m in inputs if m["role"] == "user"), None))
    model, provider = semconv.model_of(span), semconv.provider_of(span)
    # A run opened by a non-LLM span learns its model from the first LLM span.
    db.execute(
        "update runs set model = ?, provider = ? where id = ? and provider = 'otlp'",
        [model, provider, trace.run_id],
    )
    inp, out = semconv.usage_of(span)
    # Contract C1: None tokens mean "no usage reported"; a failed call says so.
    failure = {"status": "error", "error": semconv.error_of(span)} if span.error else {}
    trace.emit(
        {
            "type": "llm_call_finished",
            "at": span.end,
            "model": model,
            "provider": provider,
            "input_tokens": inp,
            "output_tokens": out,
            "latency_ms": (span.end - span.start) * 1000,
            "round": 0,
            "finish_reason": semconv.finish_reason_of(span),
            "span_id": span.span_id,
            "parent_span_id": _parent(trace, span),
            **failure,
        }
    )


def _tool(trace: _Trace, span: SpanRecord) -> None:
    tool = semconv.tool_of(span)
    trace.emit(
        {
            "type": "tool_call_started",
            "at": span.start,
            "call_id": tool["call_id"],
            "name": tool["name"],
            "arguments": tool["arguments"],
        }
    )
    trace.emit(
        {
            "type": "tool_call_finished",
            "at": span.end,
            **tool,
            "latency_ms": (span.end - span.start) * 1000,
            "cost_lines": [],
            "span_id": span.span_id,
            "parent_span_id": _parent(trace, span),
        }
    )


def _other(db: Database, trace: _Trace, span: SpanRecord, kind: str) -> None:
    """Spans that are not a step of the thread (chains, retrievers…) keep their place in the tree."""
    db.table("spans").insert(
        {
            "run_id": trace.run_id,
            "span_id": span.span_id,
            "parent_span_id": _parent(trace, span),
            "kind": kind,
            "name": span.name,
            "start_at": span.start,
            "end_at": span.end,
            "status": "error" if span.error else "ok",
            "attributes": semconv.as_text(
                {
                    k: v
                    for k, v in span.attributes.items()
                    if not k.startswith(("llm.input_messages", "input.value"))
                }
            ),
        }
    )


def _finish(db: Database, trace: _Trace, span: SpanRecord, last_assistant: str | None) -> None:
    trace.root_span_id = span.span_id
    # Children recorded before the root knew only its id: hang them under the run's agent span.
    db.execute(
        "update spans set parent_span_id = 'agent' where run_id = ? and parent_span_id = ?",
        [trace.run_id, span.span_id],
    )
    db.execute(
        "update runs set started_at = min(started_at, ?), label = ? where id = ?",
        [span.start, span.name[:LABEL_CHARS], trace.run_id],
    )
    inp, out = semconv.io_of(span)
    _set_prompt(db, trace.run_id, inp)
    if span.error:
        trace.emit({"type": "run_failed", "at": span.end, "error": semconv.error_of(span)})
    else:
        trace.emit(
            {"type": "run_finished", "at": span.end, "response": last_assistant or out or ""}
        )


def ingest_spans(db: Database, spans: list[SpanRecord]) -> IngestResult:
    """Record a batch of spans (on the writer thread, in one transaction)."""
    result = IngestResult()
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    for trace_spans in by_trace.values():
        trace = _open_trace(db, trace_spans, result)
        if trace.run_id not in result.runs:
            result.runs.append(trace.run_id)
        # Children end before their root; the root closes the run, so it goes last.
        for span in sorted(trace_spans, key=lambda s: (s.is_root, s.end, s.start)):
            if _seen(db, trace, span):
                result.duplicates += 1
                continue
            db.execute(
                "update runs set started_at = min(started_at, ?) where id = ?",
                [span.start, trace.run_id],
            )
            session = semconv.session_of(span)
            if session:
                _join_session(db, trace.run_id, session)
            kind = semconv.kind_of(span)
            if kind == semconv.LLM:
                _llm(db, trace, span)
            elif kind == semconv.TOOL:
                _tool(trace, span)
            elif not span.is_root:
                _other(db, trace, span, kind)
            if span.is_root:
                last = db.execute(
                    "select content from messages where run_id = ? and role = 'assistant'"
                    " and content != '' order by seq desc limit 1",
                    [trace.run_id],
                ).fetchone()
                _finish(db, trace, span, last[0] if last else None)
            result.accepted += 1
        trace.save()
        _announce(db, trace)
    return result


async def ingest(store: Store, broker: Broker, spans: list[SpanRecord]) -> IngestResult:
    """Write a batch, then publish its events to live viewers (after the commit)."""
    result = await store.write(ingest_spans, spans)
    for event in result.events:
        broker.publish(event)
    return result


__all__ = ["IngestResult", "ingest", "ingest_spans", "TERMINAL_EVENTS"]
