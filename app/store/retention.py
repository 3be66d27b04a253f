"""Retention: delete runs that ended long ago, with everything hanging off them, and
give the space back.

``delete_expired(db, cutoff)`` is one bounded write (``store.write``): it
picks at most ``BATCH`` runs that ended (or, for odd rows that never recorded
an end, started) before ``cutoff`` and deletes them, children first. A run is
kept whatever its age when it is

- still active (queued or running),
- pinned (``runs.pinned_at``), or scored by a pinned evaluation,
- used by an experiment or by a dataset built from runs,
- the parent of a run that still exists. So the base of a kept replay stays
  with it (its diff and lineage compare the two), and a run's children
  (replays, ``ask_agent`` helpers) always go before it, never leaving a
  dangling ``parent_run_id``.

What hangs off a run is read from the schema, not listed here: every table
with a foreign key into ``runs`` or a ``run_id`` column, and recursively the
tables pointing at those rows (an alert's deliveries). A table added by a
later migration is covered without a change here. The rows of ``runs`` go
last, through its own triggers, which keep the session totals, the
full-text index and any rollup right.

Space: deleted pages go to SQLite's freelist. ``reclaim`` (``store.maintain``,
no transaction open) hands some back to the file system with ``PRAGMA
incremental_vacuum``, which works only on a file whose ``auto_vacuum`` is
INCREMENTAL: ``enable_incremental_vacuum`` makes an existing file so with one
VACUUM.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from app.store.backend import is_postgres
from app.store.statuses import ACTIVE, sql_list

log = logging.getLogger(__name__)

BATCH = 50  # runs per write (~10 ms): every other writer waits for the batch it shares
TELEMETRY_BATCH = 2000  # unattached OTLP log records / metric points per write
RECLAIM_PAGES = 2000  # pages per incremental vacuum step (8 MB at 4 KiB pages)
_MAX_DEPTH = 4  # tables pointing at tables pointing at runs...

# Spelt exactly as the index of migration 0015 spells it, so the lookup uses it.
DATASET_RUN = "(CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.run_id') END)"

_KEPT = f"""
  r.status NOT IN {sql_list(ACTIVE)}
  AND r.pinned_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = r.id)
  AND NOT EXISTS (SELECT 1 FROM evaluations e WHERE e.run_id = r.id AND e.pinned_at IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM experiment_items x WHERE x.run_id = r.id)
  AND NOT EXISTS (SELECT 1 FROM dataset_items d WHERE {DATASET_RUN} = r.id)
"""
# Two queries rather than coalesce(ended_at, started_at): each one walks an index.
_ENDED_BEFORE = f"""
SELECT r.id FROM runs r WHERE r.ended_at < :cutoff AND {_KEPT}
ORDER BY r.ended_at LIMIT :limit
"""
_NEVER_ENDED_BEFORE = f"""
SELECT r.id FROM runs r WHERE r.ended_at IS NULL AND r.started_at < :cutoff AND {_KEPT}
ORDER BY r.started_at LIMIT :limit
"""


@dataclass(frozen=True)
class Deleted:
    """What one write deleted: runs, and rows of other tables (their children, telemetry)."""

    runs: int = 0
    rows: int = 0

    def __add__(self, other: Deleted) -> Deleted:
        return Deleted(self.runs + other.runs, self.rows + other.rows)


def expired_runs(db: Database, cutoff: float, limit: int = BATCH) -> list[str]:
    """Ids of at most ``limit`` runs older than ``cutoff`` that nothing keeps, oldest first."""
    params = {"cutoff": cutoff, "limit": limit}
    ids = [row[0] for row in db.execute(_ENDED_BEFORE, params).fetchall()]
    if len(ids) < limit:
        params["limit"] = limit - len(ids)
        ids += [row[0] for row in db.execute(_NEVER_ENDED_BEFORE, params).fetchall()]
    return ids


def delete_expired(db: Database, cutoff: float, limit: int = BATCH) -> Deleted:
    """One retention write: delete up to ``limit`` expired runs (see the module docstring)."""
    return delete_runs(db, expired_runs(db, cutoff, limit))


def delete_runs(db: Database, run_ids: Sequence[str]) -> Deleted:
    """Delete these runs and every row that hangs off them, children first."""
    if not run_ids:
        return Deleted()
    marks = ",".join("?" * len(run_ids))
    ids = list(run_ids)
    sessions = [
        row[0]
        for row in db.execute(
            f"SELECT DISTINCT session_id FROM runs WHERE id IN ({marks})"
            " AND session_id IS NOT NULL",
            ids,
        ).fetchall()
    ]
    rows = 0
    for table, column in hanging_off_runs(db):
        rows += _delete_where(db, table, f'"{column}" IN ({marks})', ids, depth=1)
    runs = db.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids).rowcount
    _tidy_sessions(db, sessions)
    return Deleted(runs, rows)


def hanging_off_runs(db: Database) -> list[tuple[str, str]]:
    """(table, column) for every column that names a run: foreign keys into ``runs``
    and columns called ``run_id`` (some tables, such as ``alerts``, have no key)."""
    found = {(child, column) for child, column, _ in _references(db, "runs")}
    found |= {(row[0], "run_id") for row in db.execute(_RUN_ID_TABLES[is_postgres(db)])}
    return sorted(found)


# Tables with a column called run_id: SQLite's catalogue, PostgreSQL's.
_RUN_ID_TABLES = {
    False: "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c"
    " WHERE m.type = 'table' AND m.name != 'runs' AND c.name = 'run_id'",
    True: "SELECT c.table_name FROM information_schema.columns c"
    " JOIN information_schema.tables t USING (table_schema, table_name)"
    " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
    " AND c.table_name != 'runs' AND c.column_name = 'run_id'",
}


def _references(db: Database, table: str) -> list[tuple[str, str, str]]:
    """(child table, its column, the column of ``table`` it names) for each foreign key."""
    if is_postgres(db):
        return [
            (r[0], r[1], r[2])
            for r in db.execute(
                "SELECT c.conrelid::regclass::text, a.attname, af.attname FROM pg_constraint c"
                " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
                " JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]"
                " WHERE c.contype = 'f' AND c.confrelid = cast(? AS regclass)",
                [table],
            )
        ]
    rows = db.execute(
        'SELECT m.name, f."from", f."to" FROM sqlite_master m, pragma_foreign_key_list(m.name) f'
        " WHERE m.type = 'table' AND f.\"table\" = ?",
        [table],
    ).fetchall()
    pk = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")').fetchall() if r[5]]
    # A key written without its column names the primary key (or the rowid).
    return [(r[0], r[1], r[2] or (pk[0] if pk else "rowid")) for r in rows]


def _delete_where(db: Database, table: str, where: str, params: list[Any], depth: int) -> int:
    """Delete ``table``'s rows matching ``where``, after the rows that point at them."""
    deleted = 0
    if depth < _MAX_DEPTH:
        for child, column, target in _references(db, table):
            if child in (table, "runs"):
                continue  # a self-reference; runs are deleted by the caller, last
            inner = f'"{column}" IN (SELECT "{target}" FROM "{table}" WHERE {where})'
            deleted += _delete_where(db, child, inner, params, depth + 1)
    return deleted + db.execute(f'DELETE FROM "{table}" WHERE {where}', params).rowcount


def _tidy_sessions(db: Database, names: list[str]) -> None:
    """A session whose runs are all gone goes; the others' first and last dates follow
    the runs that are left (the triggers keep counts and totals, not dates)."""
    if not names:
        return
    marks = ",".join("?" * len(names))
    db.execute(f"DELETE FROM run_sessions WHERE runs <= 0 AND name IN ({marks})", names)
    db.execute(
        f"""
        UPDATE run_sessions SET
          created_at = (SELECT min(started_at) FROM runs WHERE session_id = run_sessions.name),
          last_run_at = (SELECT max(started_at) FROM runs WHERE session_id = run_sessions.name)
        WHERE name IN ({marks})
        """,
        names,
    )


def delete_old_telemetry(db: Database, cutoff: float, limit: int = TELEMETRY_BATCH) -> Deleted:
    """OTLP log records that never found their run, and GenAI metric points, received
    before ``cutoff``: they hang off no run, so nothing else would ever delete them."""
    rows = 0
    for table, where in (
        ("otlp_logs", "run_id IS NULL AND received_at < ?"),
        ("otlp_metrics", "received_at < ?"),
    ):
        rows += db.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} LIMIT ?)",
            [cutoff, limit],
        ).rowcount
    return Deleted(0, rows)


# --- space (store.maintain: no transaction open) ------------------------------------------


@dataclass(frozen=True)
class Space:
    """The file's pages: how many, how many free, their size, and its auto_vacuum mode."""

    page_count: int
    freelist_count: int
    page_size: int
    auto_vacuum: int  # 0 none, 1 full, 2 incremental

    @property
    def free_bytes(self) -> int:
        return self.freelist_count * self.page_size


def space(db: Database) -> Space:
    def pragma(name: str) -> int:
        return int(db.execute(f"PRAGMA {name}").fetchone()[0])

    return Space(
        pragma("page_count"), pragma("freelist_count"), pragma("page_size"), pragma("auto_vacuum")
    )


def reclaim(db: Database, pages: int = RECLAIM_PAGES) -> int:
    """Give up to ``pages`` free pages back to the file system; return how many stay free.

    executescript, not execute: the sqlite3 module steps a statement once, and
    ``incremental_vacuum`` frees one page per step.
    """
    db.conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    return space(db).freelist_count


def checkpoint(db: Database) -> None:
    """Copy the WAL into the file (without waiting for readers), so a truncated file
    shows on disk now rather than at SQLite's next automatic checkpoint."""
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def enable_incremental_vacuum(db: Database) -> bool:
    """Make an existing file reclaimable: ``auto_vacuum`` changes only with a VACUUM.

    Done once (the setting is stored in the file). VACUUM may renumber the
    rowids of ``runs`` (its key is text), and the full-text index is keyed by
    them: it is rebuilt before any other write can run. Returns whether it ran.
    """
    if space(db).auto_vacuum != 0:
        return False
    db.conn.executescript(
        "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;"
        " BEGIN IMMEDIATE; INSERT INTO runs_fts(runs_fts) VALUES('rebuild'); COMMIT;"
    )
    return True
