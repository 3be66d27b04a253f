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

A whole export request is one write function on the group-commit writer
(``Store.write``): it shares a transaction with whatever else was waiting,
and the response is sent only after that committed, so an accepted span is a
durable span. Its spans are stored in one ``executemany`` per trace, and the
batch's traces are looked up in one query. Exporters retry, so a span
already recorded is skipped.
"""

from __future__ import annotations

from collections import defaultdict

from sqlite_utils import Database

from app.ingest import messages, semconv
from app.ingest.decode import SpanRecord
from app.ingest.facts import SpanFacts, facts_of
from app.ingest.sessions import join_conversation
from app.ingest.thread import pending_logs, record_messages, tool_from_thread
from app.ingest.trace_runs import (
    LABEL_CHARS,
    IngestResult,
    TraceRun,
    adopt_logs,
    announce,
    find_traces,
    open_trace,
    placeholders,
    waiting_logs,
)
from app.store.spans import insert_spans


def _row(trace: TraceRun, span: SpanRecord, kind: str) -> dict:
    """The ``spans`` row of ``span``, stored whole.

    A model call's tokens and cost are added by the projection of its
    ``llm_call_finished`` event (``app.store.events``), as for a native call.
    """
    return {
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
        # Encoded off the writer when the pipeline prepared them (``decode.with_cells``).
        **(
            span.cells
            or {
                "attributes": span.attributes,
                "events": span.events,
                "links": span.links,
                "resource": span.resource,
                "scope": span.scope,
            }
        ),
    }


def _fresh(db: Database, trace: TraceRun, spans: list[SpanRecord]) -> list[SpanRecord]:
    """The spans the run does not have yet (exporters retry), each once, in batch order."""
    stored: set[str] = set()
    # A run opened by this batch has no spans yet: only older runs are asked.
    if trace.created_event is None:
        ids = list({s.span_id for s in spans})
        stored = {
            row[0]
            for row in db.execute(
                f"select span_id from spans where run_id = ? and span_id in ({placeholders(ids)})",
                [trace.run_id, *ids],
            )
        }
    fresh = []
    for span in spans:
        if span.span_id not in stored:
            stored.add(span.span_id)
            fresh.append(span)
    return fresh


def _llm(db: Database, trace: TraceRun, span: SpanRecord, facts: SpanFacts) -> None:
    inputs, outputs = facts.inputs, facts.outputs
    logs = pending_logs(db, trace, span.span_id)
    if logs:  # log records that came before the span may carry its messages
        inputs, outputs = messages.messages_of(span, logs)
    record_messages(db, trace, span.start, span.end, inputs, outputs)
    if trace.provider == "otlp":
        # A run opened by a non-LLM span learns its model from the first LLM span.
        trace.patch.set(model=facts.model, provider=facts.provider)
        trace.provider = facts.provider
    inp, out = facts.usage
    # Contract C1: None tokens mean "no usage reported"; a failed call says so.
    failure = {"status": "error", "error": facts.error} if span.error else {}
    trace.emit(
        {
            "type": "llm_call_finished",
            "at": span.end,
            "model": facts.model,
            "provider": facts.provider,
            "input_tokens": inp,
            "output_tokens": out,
            "latency_ms": (span.end - span.start) * 1000,
            "round": 0,
            "finish_reason": facts.finish_reason,
            "span_id": span.span_id,
            **failure,
        }
    )


def _tool(db: Database, trace: TraceRun, span: SpanRecord, facts: SpanFacts) -> None:
    tool = tool_from_thread(db, trace.run_id, dict(facts.tool or semconv.tool_of(span)))
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


def _finish(db: Database, trace: TraceRun, span: SpanRecord, facts: SpanFacts) -> None:
    trace.root_span_id = span.span_id
    trace.patch.set(label=span.name[:LABEL_CHARS])
    inp, out = facts.io
    trace.set_prompt(inp)
    trace.ended = True
    if span.error:
        trace.emit({"type": "run_failed", "at": span.end, "error": facts.error})
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


def _record(db: Database, trace: TraceRun, spans: list[SpanRecord], result: IngestResult) -> None:
    """Store the new spans of one trace whole, then derive the run's events from them."""
    # Children end before their root; the root closes the run, so it goes last.
    ordered = sorted(spans, key=lambda s: (s.is_root, s.end, s.start))
    fresh = _fresh(db, trace, ordered)
    result.duplicates += len(ordered) - len(fresh)
    if not fresh:
        return
    # Read on the decoding thread by the pipeline (``prepare``); here for other callers.
    facts = [span.facts or facts_of(span) for span in fresh]
    insert_spans(db, [_row(trace, s, f.kind) for s, f in zip(fresh, facts, strict=True)])
    # The run starts with its earliest span; its end's latency counts from there (one UPDATE).
    trace.patch.start_by(min(s.start for s in fresh))
    for span, fact in zip(fresh, facts, strict=True):
        if fact.session:
            join_conversation(db, trace, fact.session)
        if fact.learned:
            trace.merge_params(fact.learned)
        if fact.kind == semconv.LLM:
            _llm(db, trace, span, fact)
        else:
            if fact.kind == semconv.TOOL:
                _tool(db, trace, span, fact)
            # GenAI events logged on a span that is not a model call still carry messages.
            logs = pending_logs(db, trace, span.span_id)
            if logs:
                record_messages(db, trace, span.start, span.end, *messages.event_messages(logs))
        if span.is_root:
            _finish(db, trace, span, fact)
        result.accepted += 1


def ingest_spans(db: Database, spans: list[SpanRecord]) -> IngestResult:
    """Record a batch of spans (on the writer thread, in the batch's transaction).

    The batch's traces are looked up together (their runs and their waiting
    log records, one query each), then each trace is written in turn.
    """
    result = IngestResult()
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    traces = find_traces(db, list(by_trace), result)
    for trace_id, trace_spans in by_trace.items():
        if trace_id not in traces:
            traces[trace_id] = open_trace(db, trace_spans, result)
    waiting_logs(db, traces)
    for trace_id, trace_spans in by_trace.items():
        trace = traces[trace_id]
        adopt_logs(db, trace)
        if trace.run_id not in result.runs:
            result.runs.append(trace.run_id)
        _record(db, trace, trace_spans, result)
        trace.save()
        announce(db, trace)
    return result
