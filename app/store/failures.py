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

from app.store.events import EndedRun, end_active_run
from app.store.statuses import FAILED


def fail_active_run(db: Database, run_id: str, at: float, error: str) -> EndedRun | None:
    """Record ``run_failed`` with ``error`` if the run is still active (see end_active_run)."""
    return end_active_run(db, run_id, "run_failed", at, error)


def as_failed(run: dict[str, Any], at: float, error: str) -> dict[str, Any]:
    """The run row as it will read once its failed end is written (for live pages meanwhile)."""
    latency = (at - run["started_at"]) * 1000 if run.get("started_at") else None
    return {**run, "status": FAILED, "error": error, "ended_at": at, "latency_ms": latency}


def touch_probe(db: Database, at: float) -> None:
    """One tiny real write, to learn whether the store can write again."""
    db.execute("insert or replace into storage_probe (id, probed_at) values (1, ?)", [at])
