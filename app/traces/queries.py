"""Reading a run's spans and OTLP log records, JSON cells decoded safely.

Rows are untrusted (ingested from any agent, or written before a column
existed): a JSON cell that does not parse reads as None, never as an error,
and text is made valid UTF-8 (``app.store.rows.decode_json``).
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.store.rows import decode_json

SPAN_JSON = ("attributes", "events", "links", "resource", "scope")
LOG_JSON = ("body", "attributes", "resource", "scope")


def _decoded(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return decode_json(row, *fields, corrupt=None)


def run_spans(db: Database, run_id: str) -> list[dict[str, Any]]:
    """Every span of a run, JSON cells decoded, in start order (unknown starts last)."""
    rows = db.query(
        "select * from spans where run_id = ? order by start_at is null, start_at, id", [run_id]
    )
    return [_decoded(r, SPAN_JSON) for r in rows]


def get_span(db: Database, run_id: str, span_id: str) -> dict[str, Any] | None:
    rows = list(
        db.query(
            "select * from spans where run_id = ? and span_id = ? order by id limit 1",
            [run_id, span_id],
        )
    )
    return _decoded(rows[0], SPAN_JSON) if rows else None


def _log_rows(db: Database, where: str, params: list[Any]) -> list[dict[str, Any]]:
    # ``where`` is one of the fixed conditions below, never user text.
    rows = db.query(f"select * from otlp_logs where {where} order by at is null, at, id", params)
    return [_decoded(r, LOG_JSON) for r in rows]


# A record belongs to the run it was filed under, or, while its run did not
# exist yet (logs may arrive before their spans), to the trace the run is.
_OF_RUN = "(run_id = ? or (run_id is null and trace_id != '' and trace_id = ?))"


def _has_logs(db: Database) -> bool:
    # Databases from before migration 0012 have no log table yet.
    return db.table("otlp_logs").exists()


def run_logs(db: Database, run_id: str, trace_id: str | None) -> list[dict[str, Any]]:
    """The run's log records, in time order."""
    if not _has_logs(db):
        return []
    return _log_rows(db, _OF_RUN, [run_id, trace_id or ""])


def span_logs(
    db: Database, run_id: str, trace_id: str | None, span_id: str
) -> list[dict[str, Any]]:
    """The log records of one span of the run, in time order."""
    if not _has_logs(db):
        return []
    return _log_rows(db, f"span_id = ? and {_OF_RUN}", [span_id, run_id, trace_id or ""])
