"""Queries over runs: create, read one with its thread, list, totals."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlite_utils import Database

from app.store import rollups
from app.store.rows import decode_json
from app.store.statuses import QUEUED


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
    """Dashboard KPIs, from the per-hour rollups (constant time in the number of runs)."""
    return rollups.kpis(db)


def events_after(
    db: Database, run_id: str, after_seq: int, limit: int = 1000
) -> list[dict[str, Any]]:
    """Moved to ``app.store.event_log`` (the log is stored compactly); kept here for callers."""
    from app.store.event_log import events_after as read

    return read(db, run_id, after_seq, limit)


def draft_text(db: Database, run_id: str) -> str:
    """Moved to ``app.store.event_log``; kept here for callers."""
    from app.store.event_log import draft_text as read

    return read(db, run_id)
