"""Keep every OTLP span whole, and derive a run from them through the native event log.

Each trace becomes one run (``source = 'otlp'``). Each span is stored as it
arrived (ids, kind, times, status, attributes, events, links, resource and
scope: ``app.store.spans``), then read for what it says about the agent's
steps: the events a native run would have emitted — ``run_started``,
``message``, ``tool_call_started``/``finished``, ``llm_call_finished``, and
``run_finished``/``run_failed`` when the root span arrives — so the
projection fills messages, tool calls, tokens and cost, and the live pages
stream an ingested run exactly like a native one.

Message content may come on the span (attributes, span events) or in log
records that name it (``app.ingest.logs``), before or after the span: the
records that arrived first wait in ``otlp_logs`` and are read with it.

A conversation id (``session.id``, ``gen_ai.conversation.id``) makes a
session only once a second trace shares it: some SDKs give every run a new
one, and a session per run would say nothing.

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

import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from sqlite_utils import Database

from app.ingest import normalize, semconv
from app.ingest.decode import SpanRecord
from app.store import Store
from app.store.events import TERMINAL_EVENTS, TOTALS_EVENTS, record_event
from app.store.live import RUN_CREATED_SEQ, Broker, LiveEvent
from app.store.runs import create_run, get_run
from app.store.spans import insert_span
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


def find_trace(db: Database, trace_id: str, result: IngestResult) -> _Trace | None:
    """The run a trace already became, if any."""
    row = db.execute("select * from otlp_traces where trace_id = ?", [trace_id]).fetchone()
    return None if row is None else _Trace(db, dict(row), result)


def _open_trace(db: Database, spans: list[SpanRecord], result: IngestResult) -> _Trace:
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
            "external_spans": True,
        }
    )
    # Log records that came before any span of this trace now have a run.
    db.execute(
        "update otlp_logs set run_id = ? where trace_id = ? and run_id is null", [run_id, trace_id]
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


def _store(trace: _Trace, span: SpanRecord) -> bool:
    """Store ``span`` whole; False when the run has it already (exporters retry)."""
    inp, out = semconv.usage_of(span) if semconv.kind_of(span) == semconv.LLM else (None, None)
    return insert_span(
        trace.db,
        {
            "run_id": trace.run_id,
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id or None,
            "kind": semconv.kind_of(span),
            "span_kind": span.span_kind,
            "name": span.name,
            "start_at": span.start,
            "end_at": span.end,
            "status": span.status_code,
            "status_message": span.status_message or None,
            "input_tokens": inp,
            "output_tokens": out,
            "attributes": span.attributes,
            "events": span.events,
            "links": span.links,
            "resource": span.resource,
            "scope": span.scope,
        },
    )


def _set_prompt(db: Database, run_id: str, text: str | None) -> None:
    if text:
        db.execute(
            "update runs set prompt = ? where id = ? and (prompt is null or prompt = '')",
            [text[:100_000], run_id],
        )


def _conversation(db: Database, trace: _Trace, conversation: str) -> None:
    """Note the trace's conversation; once two traces share it, their runs form a session."""
    if trace.conversation_id is not None:
        return
    trace.conversation_id = conversation
    db.execute(
        "update otlp_traces set conversation_id = ? where trace_id = ?",
        [conversation, trace.trace_id],
    )
    others = [
        row[0]
        for row in db.execute(
            "select run_id from otlp_traces where conversation_id = ? and trace_id != ?",
            [conversation, trace.trace_id],
        )
    ]
    if others:
        for run_id in [*others, trace.run_id]:
            _join_session(db, run_id, conversation)


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


def record_messages(
    db: Database, trace: _Trace, span_start: float, span_end: float, inputs: list, outputs: list
) -> None:
    """Emit the messages of one model call that the run does not have yet.

    Each call repeats the conversation so far in its inputs: only what goes
    beyond the messages already recorded is new.
    """
    new = inputs[trace.messages_seen :] if len(inputs) > trace.messages_seen else inputs[-1:]
    for message in new:
        trace.emit({"type": "message", "at": span_start, **message})
    for message in outputs:
        trace.emit({"type": "message", "at": span_end, **message})
    if not new and not outputs:
        return
    _complete_tool_calls(db, trace.run_id, [*new, *outputs])
    trace.messages_seen = max(trace.messages_seen, len(inputs)) + len(outputs)
    _set_prompt(db, trace.run_id, next((m["content"] for m in inputs if m["role"] == "user"), None))
    answer = next((m["content"] for m in reversed(outputs) if m["content"]), None)
    if answer:  # content that came (in logs) after the run ended is still its answer
        db.execute(
            f"update runs set response = ? where id = ? and status in {sql_list(TERMINAL)}"
            " and (response is null or response = '')",
            [answer, trace.run_id],
        )


def _complete_tool_calls(db: Database, run_id: str, messages: list[dict[str, Any]]) -> None:
    """Fill a tool call's arguments and result from the thread when its span left them out.

    The GenAI conventions make a tool span's arguments and result opt-in;
    the model's request for the call and the tool's answer are in the
    messages either way (before or after the tool span arrives).
    """
    for message in messages:
        for call in message.get("tool_calls") or []:
            arguments = semconv.json_of(call["function"]["arguments"])
            if isinstance(arguments, dict) and arguments:
                db.execute(
                    "update tool_calls set arguments = ? where run_id = ? and call_id = ?"
                    " and arguments in ('{}', 'null')",
                    [json.dumps(arguments, ensure_ascii=False), run_id, call["id"]],
                )
        if message["role"] == "tool" and message.get("tool_call_id"):
            db.execute(
                "update tool_calls set result = ? where run_id = ? and call_id = ?"
                " and result is null and error is null",
                [message["content"], run_id, message["tool_call_id"]],
            )


def _from_thread(db: Database, run_id: str, tool: dict[str, Any]) -> dict[str, Any]:
    """``tool`` with arguments and result the thread already has, where its span had none."""
    call_id = tool["call_id"]
    if not tool["arguments"]:
        for (raw,) in db.execute(
            "select tool_calls from messages where run_id = ? and role = 'assistant'"
            " and instr(tool_calls, ?) > 0",
            [run_id, json.dumps(call_id)],
        ):
            for call in semconv.json_of(raw) or []:
                if isinstance(call, dict) and call.get("id") == call_id:
                    arguments = semconv.json_of(call.get("function", {}).get("arguments"))
                    if isinstance(arguments, dict):
                        tool = {**tool, "arguments": arguments}
    if tool["result"] is None and tool["error"] is None:
        row = db.execute(
            "select content from messages where run_id = ? and role = 'tool'"
            " and tool_call_id = ? limit 1",
            [run_id, call_id],
        ).fetchone()
        if row is not None:
            tool = {**tool, "result": row[0]}
    return tool


def pending_logs(db: Database, trace: _Trace, span_id: str) -> list[dict[str, Any]]:
    """The log records of a span not yet read for messages, oldest first; now they are."""
    rows = [
        dict(row)
        for row in db.execute(
            "select id, event_name, body, attributes from otlp_logs"
            " where trace_id = ? and span_id = ? and applied = 0 order by at, id",
            [trace.trace_id, span_id],
        )
    ]
    if rows:
        db.execute(
            "update otlp_logs set applied = 1, run_id = ? where trace_id = ? and span_id = ?",
            [trace.run_id, trace.trace_id, span_id],
        )
    return [semconv.log_event(row) for row in rows]


def _merge_params(db: Database, trace: _Trace, span: SpanRecord) -> None:
    """Fill the run's parameters from the first span that has each (temperature, agent name…)."""
    learned = semconv.params_of(span) if semconv.kind_of(span) == semconv.LLM else {}
    agent = semconv.agent_name_of(span)
    if agent:
        learned["agent"] = agent
    tools = semconv.tool_definitions_of(span)
    if tools:
        learned["tool_definitions"] = tools
    if not learned:
        return
    run = get_run(db, trace.run_id)
    params = dict(run["params"]) if run and isinstance(run.get("params"), dict) else {}
    merged = {**learned, **params}
    if merged != params:
        db.execute(
            "update runs set params = ? where id = ?",
            [json.dumps(merged, ensure_ascii=False), trace.run_id],
        )


def _llm(db: Database, trace: _Trace, span: SpanRecord) -> None:
    inputs, outputs = semconv.messages_of(span, pending_logs(db, trace, span.span_id))
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
            "params": semconv.params_of(span),
            "span_id": span.span_id,
            **failure,
        }
    )


def _tool(db: Database, trace: _Trace, span: SpanRecord) -> None:
    tool = _from_thread(db, trace.run_id, semconv.tool_of(span))
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


def _finish(db: Database, trace: _Trace, span: SpanRecord) -> None:
    trace.root_span_id = span.span_id
    db.execute(
        "update runs set started_at = min(started_at, ?), label = ? where id = ?",
        [span.start, span.name[:LABEL_CHARS], trace.run_id],
    )
    inp, out = semconv.io_of(span)
    _set_prompt(db, trace.run_id, inp)
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
        trace = _open_trace(db, trace_spans, result)
        if trace.run_id not in result.runs:
            result.runs.append(trace.run_id)
        # Children end before their root; the root closes the run, so it goes last.
        for span in sorted(trace_spans, key=lambda s: (s.is_root, s.end, s.start)):
            if not _store(trace, span):
                result.duplicates += 1
                continue
            db.execute(
                "update runs set started_at = min(started_at, ?) where id = ?",
                [span.start, trace.run_id],
            )
            conversation = semconv.session_of(span)
            if conversation:
                _conversation(db, trace, conversation)
            _merge_params(db, trace, span)
            kind = semconv.kind_of(span)
            if kind == semconv.LLM:
                _llm(db, trace, span)
            else:
                if kind == semconv.TOOL:
                    _tool(db, trace, span)
                # GenAI events logged on a span that is not a model call still carry messages.
                logged = semconv.event_messages(pending_logs(db, trace, span.span_id))
                record_messages(db, trace, span.start, span.end, *logged)
            if span.is_root:
                _finish(db, trace, span)
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
