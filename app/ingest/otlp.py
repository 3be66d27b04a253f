"""Keep every OTLP span whole, and derive a run from them through the native event log.

Each trace becomes one run (``source = 'otlp'``). Each span is stored as it
arrived (ids, kind, times, status, attributes, events, links, resource and
scope: ``app.store.spans``), then read for what it says about the agent's
steps: the events a native run would have emitted — ``run_started``,
``message``, ``tool_call_started``/``finished``, ``llm_call_finished``, and
``run_finished``/``run_failed`` when the root span arrives — so the
projection fills messages, tool calls, tokens and cost, and the live pages
stream an ingested run exactly like a native one.

The run behind a trace is ``trace_runs``; message content, which may come
on the span or in log records before or after it, is ``thread``; a
conversation shared by several traces becomes a session in ``sessions``. An
LLM span with no usage records unknown tokens (None), and a span with status
ERROR a failed call, with its message.

A whole export request is one transaction on the writer thread: the
response is sent only after it committed, so an accepted span is a durable
span. Exporters retry, so a span already recorded is skipped.
"""

from __future__ import annotations

from collections import defaultdict

from sqlite_utils import Database

from app.ingest import messages, semconv
from app.ingest.decode import SpanRecord
from app.ingest.sessions import join_conversation
from app.ingest.thread import pending_logs, record_messages, tool_from_thread
from app.ingest.trace_runs import (
    LABEL_CHARS,
    IngestResult,
    TraceRun,
    announce,
    open_trace,
    set_prompt,
)
from app.store.rows import encode_json, json_object
from app.store.spans import insert_span


def _store(trace: TraceRun, span: SpanRecord, kind: str) -> bool:
    """Store ``span`` whole; False when the run has it already (exporters retry).

    A model call's tokens and cost are added by the projection of its
    ``llm_call_finished`` event (``app.store.events``), as for a native call.
    """
    return insert_span(
        trace.db,
        {
            "run_id": trace.run_id,
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id or None,
            "kind": kind,
            "span_kind": span.span_kind,
            "name": span.name,
            "start_at": span.start,
            "end_at": span.end,
            "status": span.status_code,
            "status_message": span.status_message or None,
            "attributes": span.attributes,
            "events": span.events,
            "links": span.links,
            "resource": span.resource,
            "scope": span.scope,
        },
    )


def _merge_params(db: Database, trace: TraceRun, span: SpanRecord, kind: str) -> None:
    """Fill the run's parameters from the first span that has each (temperature, agent name…)."""
    learned = semconv.params_of(span) if kind == semconv.LLM else {}
    agent = semconv.agent_name_of(span)
    if agent:
        learned["agent"] = agent
    tools = semconv.tool_definitions_of(span)
    if tools:
        learned["tool_definitions"] = tools
    if not learned:
        return
    row = db.execute("select params from runs where id = ?", [trace.run_id]).fetchone()
    params = json_object(row[0] if row else None)
    merged = {**learned, **params}
    if merged != params:
        db.execute("update runs set params = ? where id = ?", [encode_json(merged), trace.run_id])


def _llm(db: Database, trace: TraceRun, span: SpanRecord) -> None:
    inputs, outputs = messages.messages_of(span, pending_logs(db, trace, span.span_id))
    record_messages(db, trace, span.start, span.end, inputs, outputs)
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
            **failure,
        }
    )


def _tool(db: Database, trace: TraceRun, span: SpanRecord) -> None:
    tool = tool_from_thread(db, trace.run_id, semconv.tool_of(span))
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
        }
    )


def _finish(db: Database, trace: TraceRun, span: SpanRecord) -> None:
    trace.root_span_id = span.span_id
    db.execute(
        "update runs set started_at = min(started_at, ?), label = ? where id = ?",
        [span.start, span.name[:LABEL_CHARS], trace.run_id],
    )
    inp, out = semconv.io_of(span)
    set_prompt(db, trace.run_id, inp)
    if span.error:
        trace.emit({"type": "run_failed", "at": span.end, "error": semconv.error_of(span)})
        return
    last = db.execute(
        "select content from messages where run_id = ? and role = 'assistant'"
        " and content != '' order by seq desc limit 1",
        [trace.run_id],
    ).fetchone()
    trace.emit(
        {
            "type": "run_finished",
            "at": span.end,
            "response": (last[0] if last else None) or out or "",
        }
    )


def ingest_spans(db: Database, spans: list[SpanRecord]) -> IngestResult:
    """Record a batch of spans (on the writer thread, in one transaction)."""
    result = IngestResult()
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    for trace_spans in by_trace.values():
        trace = open_trace(db, trace_spans, result)
        if trace.run_id not in result.runs:
            result.runs.append(trace.run_id)
        # Children end before their root; the root closes the run, so it goes last.
        for span in sorted(trace_spans, key=lambda s: (s.is_root, s.end, s.start)):
            kind = semconv.kind_of(span)
            if not _store(trace, span, kind):
                result.duplicates += 1
                continue
            db.execute(
                "update runs set started_at = min(started_at, ?) where id = ?",
                [span.start, trace.run_id],
            )
            conversation = semconv.session_of(span)
            if conversation:
                join_conversation(db, trace, conversation)
            _merge_params(db, trace, span, kind)
            if kind == semconv.LLM:
                _llm(db, trace, span)
            else:
                if kind == semconv.TOOL:
                    _tool(db, trace, span)
                # GenAI events logged on a span that is not a model call still carry messages.
                logged = messages.event_messages(pending_logs(db, trace, span.span_id))
                record_messages(db, trace, span.start, span.end, *logged)
            if span.is_root:
                _finish(db, trace, span)
            result.accepted += 1
        trace.save()
        announce(db, trace)
    return result
