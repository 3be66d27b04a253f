"""Sessions: runs grouped under a name (``runs.session_id``) to compare as one experiment.

A session row appears with its first run; its totals (runs, tokens, cost,
finished and failed runs) are kept on the row by triggers on ``runs``
(migrations 0003 and 0009), so listing sessions never aggregates over runs.
"Failed" means every status in ``FAILED_LIKE`` (interrupted runs count too),
as everywhere else.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.store import rollups


def _with_rates(row: dict[str, Any]) -> dict[str, Any]:
    finished = row.get("finished") or 0
    row["active"] = max(0, (row.get("runs") or 0) - finished)
    row["failure_rate"] = (row.get("failed") or 0) / finished if finished else None
    row["total_tokens"] = (row.get("input_tokens") or 0) + (row.get("output_tokens") or 0)
    return row


def list_sessions(db: Database, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Sessions with their totals, the most recently used first."""
    rows = db.query(
        "select * from run_sessions order by last_run_at desc, id desc limit ? offset ?",
        [limit, offset],
    )
    return [_with_rates(dict(r)) for r in rows]


def count_sessions(db: Database) -> int:
    return db.execute("select count(*) from run_sessions").fetchone()[0]


def get_session(db: Database, session_id: int) -> dict[str, Any] | None:
    rows = list(db.query("select * from run_sessions where id = ?", [session_id]))
    return _with_rates(dict(rows[0])) if rows else None


def session_by_name(db: Database, name: str) -> dict[str, Any] | None:
    rows = list(db.query("select * from run_sessions where name = ?", [name]))
    return _with_rates(dict(rows[0])) if rows else None


def session_names(db: Database, limit: int = 200) -> list[str]:
    """Recent session names, for the runs filter's suggestions."""
    rows = db.execute(
        "select name from run_sessions order by last_run_at desc limit ?", [limit]
    ).fetchall()
    return [r[0] for r in rows]


def session_models(db: Database, name: str) -> list[dict[str, Any]]:
    """Per-model breakdown of one session, from its per-hour rollups (migration 0013)."""
    return rollups.session_models(db, name)
