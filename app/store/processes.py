"""Serving processes and their heartbeats: who owns which run, and who is gone.

Every process that executes runs keeps one row in ``processes`` and renews
its ``heartbeat_at`` every few seconds. A process is *live* while its last
heartbeat is younger than the lease; a run is *orphaned* when it is still
queued or running and its owner is not live (or it has no owner: runs
recorded before owners existed). Only orphaned runs may be swept to
``interrupted``, so a server starting next to another server, or next to an
``agentop run`` in flight, never touches their runs. All of it lives in the
database (no pid files), so processes on several hosts sharing one database
see the same truth.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.store.statuses import ACTIVE, sql_list

# A process renews its heartbeat every HEARTBEAT_S; one that has not done so
# for LEASE_S is gone. Three missed beats, so a busy writer queue is no death.
HEARTBEAT_S = 5.0
LEASE_S = 15.0

SERVE = "serve"
CLI = "cli"


def register_process(db: Database, process: dict[str, Any]) -> None:
    """Insert (or renew) this process's row: id, pid, host, kind, url, started_at, heartbeat_at."""
    db.table("processes").upsert(process, pk="id")


def heartbeat(db: Database, process: dict[str, Any], at: float) -> bool:
    """Renew the lease; False when the row was gone (a sweeper took this process for dead).

    The row is put back either way, so the process is visible again for what
    it starts next.
    """
    found = db.execute(
        "update processes set heartbeat_at = ? where id = ?", [at, process["id"]]
    ).rowcount
    if not found:
        register_process(db, {**process, "heartbeat_at": at})
    return bool(found)


def remove_process(db: Database, process_id: str) -> None:
    db.execute("delete from processes where id = ?", [process_id])


def live_servers(db: Database, now: float, lease_s: float = LEASE_S) -> list[dict[str, Any]]:
    """Serve processes with a live lease and a URL, freshest first."""
    rows = db.execute(
        "select * from processes where kind = ? and url is not null and heartbeat_at > ?"
        " order by heartbeat_at desc",
        [SERVE, now - lease_s],
    ).fetchall()
    return [dict(r) for r in rows]


def is_live(db: Database, process_id: str, now: float, lease_s: float = LEASE_S) -> bool:
    row = db.execute(
        "select 1 from processes where id = ? and heartbeat_at > ?", [process_id, now - lease_s]
    ).fetchone()
    return row is not None


def orphaned_runs(db: Database, now: float, lease_s: float = LEASE_S) -> list[str]:
    """Ids of unfinished runs whose owner has no live heartbeat (or that have no owner)."""
    rows = db.execute(
        f"select id from runs where status in {sql_list(ACTIVE)} and (owner is null or owner"
        " not in (select id from processes where heartbeat_at > ?)) order by started_at",
        [now - lease_s],
    ).fetchall()
    return [r[0] for r in rows]


def forget_dead_processes(db: Database, now: float, lease_s: float = LEASE_S) -> int:
    """Delete the rows of processes whose lease ran out (after their runs were swept)."""
    return db.execute("delete from processes where heartbeat_at <= ?", [now - lease_s]).rowcount
