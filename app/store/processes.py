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

Every serving replica sweeps periodically (``app.store.events.sweep_orphans``),
not only at start, so the runs of a replica that died are ended by another one once its
lease runs out (``AGENTOP_REPLICA_LEASE_S``). Two replicas sweeping at once
end each run once: on PostgreSQL the orphans are locked (``for update skip
locked``) in the sweeping transaction, so a second sweeper skips them and then
finds them ended; the terminal event's sequence number comes from the locked
row. On SQLite the database has one writer at a time anyway.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.store.backend import is_postgres
from app.store.statuses import ACTIVE, sql_list

# A process renews its heartbeat every HEARTBEAT_S; one that has not done so
# for LEASE_S is gone. Three missed beats, so a busy writer queue is no death.
# A server takes its lease from settings (replica_lease_s) and beats accordingly.
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


def live_peers(db: Database, process_id: str, now: float, lease_s: float = LEASE_S) -> int:
    """How many other serve processes hold a live lease (replicas beside this one)."""
    row = db.execute(
        "select count(*) from processes where kind = ? and id != ? and heartbeat_at > ?",
        [SERVE, process_id, now - lease_s],
    ).fetchone()
    return int(row[0])


def is_live(db: Database, process_id: str, now: float, lease_s: float = LEASE_S) -> bool:
    row = db.execute(
        "select 1 from processes where id = ? and heartbeat_at > ?", [process_id, now - lease_s]
    ).fetchone()
    return row is not None


def heartbeat_every(lease_s: float) -> float:
    """How often to renew a lease of ``lease_s``: three beats may be missed before it ends."""
    return min(HEARTBEAT_S, lease_s / 4)


def orphaned_runs(
    db: Database, now: float, lease_s: float = LEASE_S, unowned: bool = True
) -> list[str]:
    """Ids of unfinished runs whose owner has no live heartbeat (or that have no owner).

    ``unowned=False`` leaves out runs with no owner: ingested (OTLP) runs, whose
    spans any replica may still be receiving, and runs from before owners.
    On PostgreSQL the rows stay locked until the caller's transaction ends, and
    rows another sweeper holds are skipped (see the module docstring).
    """
    lock = " for update of runs skip locked" if is_postgres(db) else ""
    ownerless = "owner is null or " if unowned else ""
    rows = db.execute(
        f"select id from runs where status in {sql_list(ACTIVE)} and ({ownerless}owner"
        f" not in (select id from processes where heartbeat_at > ?)) order by started_at{lock}",
        [now - lease_s],
    ).fetchall()
    return [r[0] for r in rows]


# How a run or job whose server is gone ends.
INTERRUPTED_ERROR = "interrupted: the server stopped"


# Statuses of a background job (experiment, export, fine-tune job) still under way.
UNFINISHED_JOBS = ("queued", "running")


def with_owner(row: dict[str, Any], owner: str | None) -> dict[str, Any]:
    """A job's ``row`` to insert, naming its owner (the process that runs the job)."""
    return {**row, "owner": owner} if owner else row


def orphaned_jobs(
    db: Database,
    table: str,
    now: float,
    lease_s: float = LEASE_S,
    unowned: bool = True,
    unfinished: tuple[str, ...] = UNFINISHED_JOBS,
) -> list[int]:
    """Ids of a job table's unfinished rows whose owner has no live heartbeat.

    Rows with no owner (older than migration 0016) only with ``unowned``: a server
    alone may take them, one beside other replicas leaves them to whoever runs
    them. Locked on PostgreSQL, as ``orphaned_runs``.
    """
    lock = " for update skip locked" if is_postgres(db) else ""
    statuses = "(" + ", ".join(f"'{status}'" for status in unfinished) + ")"  # constants
    ownerless = "owner is null or " if unowned else ""
    rows = db.execute(
        f"select id from {table} where status in {statuses} and ({ownerless}owner"
        f" not in (select id from processes where heartbeat_at > ?)) order by id{lock}",
        [now - lease_s],
    )
    return [r[0] for r in rows.fetchall()]


def claim(db: Database, table: str, ids: list[int], owner: str) -> None:
    """Make ``owner`` the owner of job rows it took over."""
    if ids:
        marks = ", ".join("?" * len(ids))
        db.execute(f"update {table} set owner = ? where id in ({marks})", [owner, *ids])


def forget_dead_processes(db: Database, now: float, lease_s: float = LEASE_S) -> int:
    """Delete the rows of processes whose lease ran out (after their runs were swept)."""
    return db.execute("delete from processes where heartbeat_at <= ?", [now - lease_s]).rowcount
