"""Versioned migrations on PostgreSQL, applied under an advisory lock.

PostgreSQL starts from ``baseline.sql``: the schema SQLite has after its
migrations m0001..m0015, in one script (there is no older PostgreSQL studio to
bring forward step by step). A later migration adds a ``NNNN_name.sql`` file
here beside its SQLite twin ``app/store/migrations/mNNNN_name.py``; both record
their name in ``_migrations``. A migration for PostgreSQL alone (an index
SQLite has implicitly) has no twin. ``compat.sql`` (SQLite's functions) is applied at
every start.

Several replicas may start at once: the advisory lock makes one of them migrate
while the others wait, then find nothing left to do.
"""

from __future__ import annotations

import time
from pathlib import Path

from app.store.backend import MIGRATION_LOCK
from app.store.postgres.database import PgDatabase

HERE = Path(__file__).parent
# Name -> script, in order. The baseline stands for SQLite's 0001..0015.
MIGRATIONS = [
    ("0015_baseline", HERE / "baseline.sql"),
    ("0016_replicas", HERE / "0016_replicas.sql"),
    ("0017_page_order", HERE / "0017_page_order.sql"),  # PostgreSQL only: see the file
]


def apply_pg_migrations(db: PgDatabase) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db.execute("select pg_advisory_lock(?)", [MIGRATION_LOCK])
    try:
        db.conn.executescript((HERE / "compat.sql").read_text())
        db.execute(
            "create table if not exists _migrations"
            " (name text primary key, applied_at double precision)"
        )
        done = {row[0] for row in db.execute("select name from _migrations")}
        applied = []
        for name, script in MIGRATIONS:
            if name in done:
                continue
            db.execute("begin")
            try:
                db.conn.executescript(script.read_text())
                db.execute(
                    "insert into _migrations (name, applied_at) values (?, ?)", [name, time.time()]
                )
                db.execute("commit")
            except BaseException:
                db.conn.rollback()
                raise
            applied.append(name)
        return applied
    finally:
        db.execute("select pg_advisory_unlock(?)", [MIGRATION_LOCK])
