"""Ending a run from outside its agent loop: after a storage failure, or a stall.

The recorder's own writes follow its sequence numbers; these functions take
the next number from the run row on the writer thread instead, so they can
end a run whose recorder gave up or whose task hangs. They leave a run that
has already ended alone. Also the store's probe write, which tells a
degraded store that it can write again.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.store.events import record_event
from app.store.statuses import ACTIVE, FAILED

EndedRun = tuple[int, dict[str, Any], dict[str, Any] | None]


def fail_active_run(db: Database, run_id: str, at: float, error: str) -> EndedRun | None:
    """Record ``run_failed`` with ``error`` if the run is still active.

    Returns the sequence number, the stored event and the run row, for the
    live broker; None when the run had ended (or does not exist).
    """
    row = db.execute("select status, last_seq from runs where id = ?", [run_id]).fetchone()
    if row is None or row[0] not in ACTIVE:
        return None
    seq = row[1] + 1
    stored, run = record_event(db, run_id, seq, {"type": "run_failed", "at": at, "error": error})
    return seq, stored, run


def as_failed(run: dict[str, Any], at: float, error: str) -> dict[str, Any]:
    """The run row as it will read once its failed end is written (for live pages meanwhile)."""
    latency = (at - run["started_at"]) * 1000 if run.get("started_at") else None
    return {**run, "status": FAILED, "error": error, "ended_at": at, "latency_ms": latency}


def touch_probe(db: Database, at: float) -> None:
    """One tiny real write, to learn whether the store can write again."""
    db.execute("insert or replace into storage_probe (id, probed_at) values (1, ?)", [at])
