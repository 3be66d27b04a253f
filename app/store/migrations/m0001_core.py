"""The core schema: runs, their append-only event log, messages, tool calls, spans."""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0001_core")
def core(db: Database) -> None:
    db.table("runs").create(
        {
            "id": str,
            "session_id": str,
            "parent_run_id": str,
            "status": str,
            "model": str,
            "provider": str,
            "params": str,
            "prompt": str,
            "response": str,
            "started_at": float,
            "ended_at": float,
            "latency_ms": float,
            "input_tokens": int,
            "output_tokens": int,
            "cost_usd": float,
            "cost_status": str,  # free | priced | unpriced | partial
            "tool_calls": int,
            "tool_errors": int,
            "error": str,
            "source": str,  # studio | cli | otlp
            "last_seq": int,
        },
        pk="id",
        not_null={"status", "started_at"},
        defaults={
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "tool_calls": 0,
            "tool_errors": 0,
            "last_seq": 0,
            "source": "studio",
        },
    )
    db.table("events").create(
        {"run_id": str, "seq": int, "type": str, "at": float, "payload": str},
        pk=("run_id", "seq"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("messages").create(
        {
            "id": int,
            "run_id": str,
            "seq": int,
            "role": str,
            "content": str,
            "tool_calls": str,
            "tool_call_id": str,
            "name": str,
            "at": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("tool_calls").create(
        {
            "id": int,
            "run_id": str,
            "call_id": str,
            "seq": int,
            "name": str,
            "arguments": str,
            "result": str,
            "error": str,
            "status": str,  # running | ok | error
            "latency_ms": float,
            "cost_usd": float,
            "cost_lines": str,
            "started_at": float,
            "ended_at": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("spans").create(
        {
            "id": int,
            "run_id": str,
            "span_id": str,
            "parent_span_id": str,
            "kind": str,  # agent | llm | tool
            "name": str,
            "start_at": float,
            "end_at": float,
            "status": str,
            "input_tokens": int,
            "output_tokens": int,
            "cost_usd": float,
            "attributes": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("runs").create_index(["started_at"])
    db.table("runs").create_index(["status", "started_at"])
    db.table("runs").create_index(["session_id", "started_at"])
    db.table("runs").create_index(["parent_run_id"])
    db.table("messages").create_index(["run_id", "seq"])
    db.table("tool_calls").create_index(["run_id", "call_id"], unique=True)
    db.table("spans").create_index(["run_id", "span_id"])
