"""Processes that serve runs, and which one owns each run.

Every serving process (``agentop serve``, or ``agentop run`` working
in-process) keeps a row in ``processes`` with a heartbeat; a run's ``owner``
is the process that executes it. Only runs whose owner has no live
heartbeat (or no owner at all: runs from before this migration) are swept
to ``interrupted`` (``app.store.processes``).
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0008_process_owners")
def process_owners(db: Database) -> None:
    db.table("processes").create(
        {
            "id": str,
            "pid": int,
            "host": str,
            "kind": str,  # serve | cli
            "url": str,  # where a serve process answers; NULL for cli
            "started_at": float,
            "heartbeat_at": float,
        },
        pk="id",
        not_null={"pid", "host", "kind", "started_at", "heartbeat_at"},
    )
    db.execute("create index if not exists processes_heartbeat on processes (heartbeat_at)")
    db.execute("alter table runs add column owner text")
    # The sweep looks for unfinished runs only; a partial index keeps that cheap.
    db.execute(
        "create index if not exists runs_unfinished_owner on runs (owner)"
        " where status in ('queued', 'running')"
    )
