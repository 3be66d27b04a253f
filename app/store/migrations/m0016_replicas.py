"""Several replicas on one database: who owns each background job, and a shared secret.

- ``experiments.owner``, ``exports.owner``, ``finetune_jobs.owner``: the process
  (``processes.id``) running the job, as ``runs.owner`` is for runs, so a
  replica whose lease ran out has its jobs recovered by another and a restart
  of one replica leaves the others' jobs alone. Older rows have no owner.
- ``studio_secrets``: secrets every replica must share (the CSRF key). SQLite
  keeps using the file in the data dir; the table is here so both schemas stay
  the same (``app/store/postgres/0016_replicas.sql`` is this migration's twin).
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0016_replicas")
def replicas(db: Database) -> None:
    for table in ("experiments", "exports", "finetune_jobs"):
        if "owner" not in db.table(table).columns_dict:
            db.table(table).add_column("owner", str)
    db.execute(
        "CREATE TABLE IF NOT EXISTS studio_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
