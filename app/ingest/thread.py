"""The thread of an ingested run: messages from spans and logs, tool calls completed from them.

A model call's messages come on its span (attributes, span events) or in
log records that name it, which may arrive before the span (they wait in
``otlp_logs``) or after it. Each call repeats the conversation so far, so
only what goes beyond the messages already recorded is new.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from app.ingest import messages, semconv
from app.ingest.trace_runs import TraceRun
from app.store.rows import encode_json
from app.store.statuses import TERMINAL, sql_list


def record_messages(
    db: Database, trace: TraceRun, span_start: float, span_end: float, inputs: list, outputs: list
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
    trace.set_prompt(next((m["content"] for m in inputs if m["role"] == "user"), None))
    answer = next((m["content"] for m in reversed(outputs) if m["content"]), None)
    # Content that came (in logs) after the run ended is still its answer; before the
    # end, ``run_finished`` takes the last assistant message itself.
    if answer and trace.ended:
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
                    [encode_json(arguments), run_id, call["id"]],
                )
        if message["role"] == "tool" and message.get("tool_call_id"):
            db.execute(
                "update tool_calls set result = ? where run_id = ? and call_id = ?"
                " and result is null and error is null",
                [message["content"], run_id, message["tool_call_id"]],
            )


def tool_from_thread(db: Database, run_id: str, tool: dict[str, Any]) -> dict[str, Any]:
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
                    arguments = semconv.json_of(
                        semconv.as_dict(call.get("function")).get("arguments")
                    )
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


def pending_logs(db: Database, trace: TraceRun, span_id: str) -> list[dict[str, Any]]:
    """The log records of a span not yet read for messages, oldest first; now they are.

    Only spans the batch found waiting records for (``waiting_logs``, one query per
    batch) are looked up: most spans have none.
    """
    if span_id not in trace.waiting_logs:
        return []
    trace.waiting_logs.discard(span_id)
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
    return [messages.log_event(row) for row in rows]
