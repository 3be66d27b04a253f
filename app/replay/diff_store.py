"""Rows of the ``diffs`` table: create one pending, fill it once, read it back."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlite_utils import Database

from app.store.rows import decode_json


def new_diff_id() -> str:
    return uuid.uuid4().hex[:16]


def create_diff(
    db: Database,
    run_a: str,
    run_b: str,
    kind: str,
    overrides: dict[str, Any] | None = None,
    diff_id: str | None = None,
) -> dict[str, Any]:
    diff_id = diff_id or new_diff_id()
    row = {
        "id": diff_id,
        "run_a": run_a,
        "run_b": run_b,
        "kind": kind,
        "status": "pending",
        "overrides": json.dumps(overrides or {}, ensure_ascii=False),
        "created_at": time.time(),
    }
    db.table("diffs").insert(row)
    diff = get_diff(db, diff_id)
    assert diff is not None  # the row was just inserted
    return diff


def fill_diff(db: Database, diff_id: str, data: dict[str, Any]) -> bool:
    """Store the computed diff; only the first fill counts (the end of a run and a
    page view may race to compute it)."""
    cursor = db.execute(
        "update diffs set status = 'ready', data = ?, identical = ?, similarity = ?,"
        " computed_at = ? where id = ? and status = 'pending'",
        [
            json.dumps(data, ensure_ascii=False, default=str),
            int(bool(data.get("identical"))),
            data.get("answer", {}).get("similarity"),
            time.time(),
            diff_id,
        ],
    )
    return cursor.rowcount == 1


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row = decode_json(row, "overrides", "data")
    row["identical"] = None if row.get("identical") is None else bool(row["identical"])
    return row


def get_diff(db: Database, diff_id: str) -> dict[str, Any] | None:
    rows = list(db.query("select * from diffs where id = ?", [diff_id]))
    return _decode(dict(rows[0])) if rows else None


def diffs_of_run(db: Database, run_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """Diffs a run takes part in, newest first, without their (large) data."""
    rows = db.query(
        "select id, run_a, run_b, kind, status, identical, similarity, created_at from diffs"
        " where run_a = ? or run_b = ? order by created_at desc limit ?",
        [run_id, run_id, limit],
    )
    return [_decode(dict(r)) for r in rows]


def replay_diff_of(db: Database, run_id: str) -> str | None:
    """The id of the diff made when ``run_id`` was started as a replay."""
    row = db.execute(
        "select id from diffs where run_b = ? and kind = 'replay' order by created_at limit 1",
        [run_id],
    ).fetchone()
    return row[0] if row else None
