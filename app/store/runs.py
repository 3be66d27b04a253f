"""Queries over runs: create, read one with its thread, list, totals."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlite_utils import Database

from app.store.rows import decode_json
from app.store.statuses import ACTIVE, FAILED_LIKE, QUEUED, sql_list


def run_params(run: dict[str, Any]) -> dict[str, Any]:
    """A run's ``params`` as a dict; empty when absent or not a JSON object."""
    params = run.get("params")
    return params if isinstance(params, dict) else {}


def create_run(db: Database, run: dict[str, Any]) -> dict[str, Any]:
    row = {
        "status": QUEUED,
        "started_at": time.time(),
        "source": "studio",
        **run,
    }
    if isinstance(row.get("params"), dict):
        row["params"] = json.dumps(row["params"])
    db.table("runs").insert(row)
    created = get_run(db, row["id"])
    assert created is not None  # the row was just inserted
    return created


def get_run(db: Database, run_id: str) -> dict[str, Any] | None:
    rows = list(db.query("select * from runs where id = ?", [run_id]))
    return decode_json(dict(rows[0]), "params") if rows else None


def run_detail(db: Database, run_id: str) -> dict[str, Any] | None:
    """A run with its messages, tool calls and spans, for pages and the API."""
    run = get_run(db, run_id)
    if run is None:
        return None
    messages = [
        decode_json(dict(r), "tool_calls")
        for r in db.query("select * from messages where run_id = ? order by seq", [run_id])
    ]
    tool_calls = [
        decode_json(dict(r), "arguments", "cost_lines")
        for r in db.query("select * from tool_calls where run_id = ? order by seq", [run_id])
    ]
    spans = [
        decode_json(dict(r), "attributes", "events", "links", "resource", "scope")
        for r in db.query("select * from spans where run_id = ? order by start_at, id", [run_id])
    ]
    return {"run": run, "messages": messages, "tool_calls": tool_calls, "spans": spans}


def list_runs(db: Database, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    rows = db.query(
        "select * from runs order by started_at desc, id desc limit ? offset ?",
        [limit, offset],
    )
    return [decode_json(dict(r), "params") for r in rows]


def count_runs(db: Database) -> int:
    return db.execute("select count(*) from runs").fetchone()[0]


def totals(db: Database) -> dict[str, Any]:
    """Dashboard KPIs, from the running totals kept on each run row."""
    row = db.execute(
        f"""
        select count(*) as runs,
               -- total() sums in floating point: rows written before ingest clamped
               -- numbers cannot overflow it; the cast saturates at 64 bits.
               cast(total(input_tokens) as integer) as input_tokens,
               cast(total(output_tokens) as integer) as output_tokens,
               total(cost_usd) as cost_usd,
               total(extra_cost_usd) as extra_cost_usd,
               sum(case when cost_status in ('unpriced', 'partial') then 1 else 0 end)
                   as unpriced_runs,
               sum(case when usage_unknown_calls > 0 then 1 else 0 end) as usage_unknown_runs,
               sum(case when status in {sql_list(FAILED_LIKE)} then 1 else 0 end) as failed,
               sum(case when status in {sql_list(ACTIVE)} then 1 else 0 end) as active,
               avg(latency_ms) as avg_latency_ms
        from runs
        """
    ).fetchone()
    return dict(row)


def events_after(
    db: Database, run_id: str, after_seq: int, limit: int = 1000
) -> list[dict[str, Any]]:
    rows = db.query(
        "select seq, type, payload from events where run_id = ? and seq > ? order by seq limit ?",
        [run_id, after_seq, limit],
    )
    return [{"seq": r["seq"], "type": r["type"], "payload": json.loads(r["payload"])} for r in rows]


def draft_text(db: Database, run_id: str) -> str:
    """Assistant text streamed since the last complete message (for a page opened mid-run)."""
    last_message = db.execute(
        "select coalesce(max(seq), 0) from events where run_id = ? and type = 'message'",
        [run_id],
    ).fetchone()[0]
    rows = db.query(
        "select payload from events where run_id = ? and type = 'token' and seq > ? order by seq",
        [run_id, last_message],
    )
    return "".join(json.loads(r["payload"])["text"] for r in rows)
