"""Copy a SQLite studio into an empty PostgreSQL database, then compare the counts.

The target is migrated first (``apply_pg_migrations``), then filled in one
transaction: a copy that fails leaves the target as empty as it was, so it can
simply be run again. Each table goes over with ``COPY … FROM STDIN`` in batches
of ``batch`` rows, parents before children (the target's foreign keys), runs in
SQLite's rowid order (``runs.rowid`` is generated on PostgreSQL and keeps
"newest recorded first"), and with their ids, after which each identity
sequence is moved past the highest id.

Not copied: ``_migrations`` (each database has its own), SQLite's internals and
the FTS5 index ``runs_fts*`` (PostgreSQL computes ``runs.search``), and runtime
state (``processes``: heartbeats of servers on the source; ``storage_probe``).

The rollups (``rollup_*``) and the session totals in ``run_sessions`` are
kept by the target's triggers as runs and evaluations are inserted, so they are
not copied but recomputed. ``run_sessions`` rows are copied first with their
totals at zero (keeping each session's id, name and dates, and sessions with
no runs left); the triggers then add every run once.
"""

from __future__ import annotations

import graphlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from app.database.cells import cell, event_payload
from app.store.postgres.database import PgDatabase
from app.store.postgres.migrate import apply_pg_migrations

SKIPPED = {"_migrations", "processes", "storage_probe"}
# run_sessions' columns that the runs triggers add up: copied as zero (see above).
SESSION_TOTALS = {"runs", "finished", "failed", "input_tokens", "output_tokens", "cost_usd"}
Say = Callable[[str], None]
# Progress lines at most this often (seconds) while one table is copied.
PROGRESS_EVERY_S = 5.0


class CopyRefused(Exception):
    """The copy cannot start: the one-line reason is the message."""


class CopyFailed(Exception):
    """PostgreSQL refused a row: nothing was written (the message says which row and why)."""


@dataclass
class Table:
    """One table to copy: the target's columns (generated ones left out) and their types."""

    name: str
    columns: list[str]
    types: list[str]
    derived: bool = False
    identity: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Count:
    table: str
    source: int
    target: int

    @property
    def same(self) -> bool:
        return self.source == self.target


def is_derived(name: str) -> bool:
    """Tables the target's triggers fill as runs and evaluations arrive (not copied)."""
    return name.startswith("rollup_")


def _source_tables(source: sqlite3.Connection) -> set[str]:
    rows = source.execute("select name from sqlite_master where type = 'table'")
    return {
        name
        for (name,) in rows
        if not name.startswith(("sqlite_", "runs_fts")) and name not in SKIPPED
    }


def plan(source: sqlite3.Connection, target: psycopg.Connection[Any]) -> list[Table]:
    """The tables to copy, parents first, derived tables last; refused when the source
    holds a table or column that PostgreSQL's schema has no place for."""
    tables: dict[str, Table] = {}
    columns = target.execute(
        "select table_name, column_name, data_type, is_generated, identity_generation"
        " from information_schema.columns where table_schema = current_schema()"
        " order by table_name, ordinal_position"
    )
    for name, column, kind, generated, identity in columns:
        if name in SKIPPED:
            continue
        table = tables.setdefault(name, Table(name, [], [], derived=is_derived(name)))
        if generated == "ALWAYS" or identity == "ALWAYS":
            continue  # runs.search, runs.rowid: PostgreSQL computes them
        table.columns.append(column)
        table.types.append(kind)
        if identity == "BY DEFAULT":
            table.identity.append(column)
    present = _source_tables(source)
    extra = sorted(present - set(tables))
    if extra:
        raise CopyRefused(
            f"the source has tables PostgreSQL's schema lacks ({', '.join(extra)}):"
            " is this agentop older than the studio's data?"
        )
    tables = {name: t for name, t in tables.items() if name in present}
    for table in tables.values():
        have = [r[1] for r in source.execute(f'pragma table_info("{table.name}")')]
        missing = sorted(set(have) - set(table.columns))
        if missing:
            raise CopyRefused(
                f"{table.name}: columns PostgreSQL's schema lacks ({', '.join(missing)})"
            )
        # A column only the target has keeps its default.
        kept = [(c, t) for c, t in zip(table.columns, table.types, strict=True) if c in have]
        table.columns, table.types = [c for c, _ in kept], [t for _, t in kept]
    return _ordered(target, tables)


def _ordered(target: psycopg.Connection[Any], tables: dict[str, Table]) -> list[Table]:
    """Parents before children (the target's foreign keys), run_sessions before runs (its
    totals follow them); derived tables last, to count only."""
    order: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in sorted(tables):
        order.add(name)
    references = target.execute(
        "select conrelid::regclass::text, confrelid::regclass::text from pg_constraint"
        " where contype = 'f' and connamespace = current_schema()::regnamespace"
    )
    for child, parent in references:
        if child in tables and parent in tables and child != parent:
            order.add(child, parent)
    names = sorted(order.static_order(), key=lambda n: n != "run_sessions")  # stable
    return [tables[n] for n in names if not tables[n].derived] + [
        tables[n] for n in names if tables[n].derived
    ]


def refuse_unless_empty(target: psycopg.Connection[Any], tables: list[Table]) -> None:
    """Refuse a target that holds data already: ids would clash, or rows be mixed."""
    held = []
    for table in tables:
        if table.derived:
            continue
        query = sql.SQL("select count(*) from (select 1 from {} limit 1) t")
        if target.execute(query.format(sql.Identifier(table.name))).fetchone()[0]:  # type: ignore[index]
            held.append(table.name)
    if held:
        raise CopyRefused(
            f"the target database already holds data ({', '.join(held)}):"
            " copy-db fills an empty database only (create a new one)"
        )


def _rows(source: sqlite3.Connection, table: Table, batch: int) -> Iterator[list[tuple]]:
    """The source's rows of ``table`` as the target takes them, ``batch`` at a time."""
    if table.name == "events":
        cursor = source.execute(
            "select e.run_id, e.seq, e.type, e.at, e.payload,"
            " m.role, m.content, m.tool_calls, m.tool_call_id, m.name from events e"
            " left join messages m on typeof(e.payload) = 'blob' and e.type = 'message'"
            " and m.id = (select id from messages where run_id = e.run_id and seq = e.seq"
            "   order by id limit 1)"
            " order by e.rowid"
        )
        assert table.columns == ["run_id", "seq", "type", "at", "payload"], table.columns
    else:
        names = ", ".join(f'"{c}"' for c in table.columns)
        cursor = source.execute(f'select {names} from "{table.name}" order by rowid')
    types = table.types
    zero = [n for n, c in enumerate(table.columns) if c in SESSION_TOTALS]
    while chunk := cursor.fetchmany(batch):
        if table.name == "events":
            chunk = [
                (run_id, seq, kind, at, event_payload(kind, at, payload, message))
                for run_id, seq, kind, at, payload, *message in chunk
            ]
        elif table.name == "run_sessions":
            chunk = [tuple(0 if n in zero else v for n, v in enumerate(row)) for row in chunk]
        yield [tuple(cell(v, t) for v, t in zip(row, types, strict=True)) for row in chunk]


def _copy_table(
    source: sqlite3.Connection,
    target: psycopg.Connection[Any],
    table: Table,
    batch: int,
    say: Say,
) -> int:
    started = last = time.monotonic()
    statement = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    copied = 0
    for rows in _rows(source, table, batch):
        with target.cursor().copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        copied += len(rows)
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            say(f"  {table.name}: {copied} rows so far ({_rate(copied, last - started)})")
    seconds = time.monotonic() - started
    say(
        f"{table.name}: {copied} rows in {seconds:.1f}s ({_rate(copied, seconds)})"
        if copied
        else f"{table.name}: empty"
    )
    return copied


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "-"


def _move_sequences(target: psycopg.Connection[Any], tables: list[Table]) -> None:
    """Identity columns got explicit ids: the next generated one must come after them."""
    for table in tables:
        for column in table.identity:
            target.execute(
                sql.SQL(
                    "select setval(pg_get_serial_sequence(%s, %s), max({}))"
                    " from {} having max({}) is not null"
                ).format(
                    sql.Identifier(column), sql.Identifier(table.name), sql.Identifier(column)
                ),
                [table.name, column],
            )


def _why(exc: psycopg.DatabaseError) -> str:
    """PostgreSQL's reason and where (``COPY runs, line 3, column …``), on one line."""
    message = exc.diag.message_primary or str(exc).strip().splitlines()[0]
    where = (exc.diag.context or "").strip().splitlines()
    return f"{message} ({where[-1]})" if where else message


def migrate_target(url: str) -> list[str]:
    """Bring the target's schema to the studio's; the names of migrations applied."""
    db = PgDatabase(url)
    try:
        return apply_pg_migrations(db)
    finally:
        db.close()


def open_source(path: Path) -> sqlite3.Connection:
    """The source database, read in one snapshot (a server writing meanwhile is not seen)."""
    source = sqlite3.connect(str(path), isolation_level=None)
    # Text that is not UTF-8 (written by another tool) reads with replacement characters
    # instead of stopping the copy.
    source.text_factory = lambda raw: raw.decode("utf-8", "replace")
    source.execute("pragma busy_timeout = 10000")
    source.execute("begin")
    source.execute("select count(*) from sqlite_master").fetchone()  # the snapshot starts here
    return source


def count_rows(conn: Any, tables: list[Table]) -> dict[str, int]:
    return {
        t.name: int(conn.execute(f'select count(*) from "{t.name}"').fetchone()[0]) for t in tables
    }


def copy_studio(source_path: Path, url: str, batch: int, say: Say) -> list[Count]:
    """Copy the SQLite studio at ``source_path`` into the PostgreSQL database ``url``
    (migrated first, and refused unless empty); the row counts of each table on both."""
    applied = migrate_target(url)
    say(f"target migrated: {', '.join(applied)}" if applied else "target schema is current")
    source = open_source(source_path)
    try:
        with psycopg.connect(url) as target:
            tables = plan(source, target)
            refuse_unless_empty(target, tables)
            started = time.monotonic()
            current = "sequences"
            try:
                with target.transaction():
                    for table in tables:
                        current = table.name
                        if not table.derived:
                            _copy_table(source, target, table, batch, say)
                    current = "sequences"
                    _move_sequences(target, tables)
            except psycopg.DatabaseError as exc:
                if isinstance(exc, psycopg.OperationalError):
                    raise  # the server went away: not about a row
                raise CopyFailed(f"{current}: {_why(exc)}") from exc
            say(f"committed in {time.monotonic() - started:.1f}s")
            before = count_rows(source, tables)
            after = count_rows(target, tables)
    finally:
        source.close()
    return [Count(t.name, before[t.name], after[t.name]) for t in tables]
