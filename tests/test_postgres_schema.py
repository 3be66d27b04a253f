"""PostgreSQL's baseline schema (app/store/postgres/baseline.sql) against SQLite's migrations.

A real server (``tests.postgres_server``, Debian's binaries) gets the baseline in
fresh databases; a fresh SQLite studio (``app.store.Store``) gives the other side.
The structure is compared table by table (columns, types, defaults, keys, indexes,
foreign keys, triggers), then the same writes are run on both and every rollup
table, and the session totals, must hold the same rows, float for float.

psql is the client (psycopg is the studio's driver, not a test dependency): values
come back as text and are read by the type SQLite gave the same cell.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.store import Store
from app.store.postgres.migrate import MIGRATIONS
from tests.postgres_server import create_database, postgres_bin, start_postgres

SCRIPTS = Path(__file__).parent.parent / "app/store/postgres"
BASELINE = SCRIPTS / "baseline.sql"
COMPAT = SCRIPTS / "compat.sql"  # SQLite's functions, applied before any migration
PG_ONLY_COLUMNS = {"runs": ["rowid", "search"]}  # stand-ins for SQLite's rowid and FTS5
PG_ONLY_INDEXES = {"runs_rowid", "runs_search"}
NULL, SEP = "\\N", "\x1f"  # psql's output for NULL, and between fields

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL binaries not found")


class Psql:
    """Statements and queries through ``psql`` on one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        bin_dir = postgres_bin()
        assert bin_dir is not None
        self.psql = str(bin_dir / "psql")

    def run(self, sql: str) -> str:
        done = subprocess.run(
            [self.psql, self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", SEP]
            + ["-P", f"null={NULL}"],
            input=sql,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def rows(self, sql: str) -> list[list[str]]:
        return [line.split(SEP) for line in self.run(sql).splitlines()]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    url, stop, _ = start_postgres()
    try:
        yield url
    finally:
        stop()


def fresh_pg(server: str, name: str) -> Psql:
    """A new database migrated as ``app.store.postgres.migrate`` does it: compat.sql,
    then the baseline and each later migration, each in one transaction."""
    psql = Psql(create_database(server, name))
    scripts = "".join(f"BEGIN;\n\\i {path}\nCOMMIT;\n" for _, path in MIGRATIONS)
    psql.run(f"\\i {COMPAT}\n{scripts}")
    return psql


@pytest.fixture(scope="module")
def pg(server: str) -> Psql:
    return fresh_pg(server, "schema")


def studio(path: Path) -> sqlite3.Connection:
    """A fresh SQLite studio, migrated by the store, opened as the store opens it."""
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    conn = studio(tmp_path_factory.mktemp("schema") / "studio.db")
    yield conn
    conn.close()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = studio(tmp_path / "studio.db")
    yield conn
    conn.close()


def sqlite_tables(lite: sqlite3.Connection) -> list[str]:
    """The studio's tables: not SQLite's own, not the FTS5 index and its shadow tables."""
    return [
        name
        for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not name.startswith(("sqlite_", "runs_fts")) and name != "_migrations"
    ]


def by_table(rows: list[list[str]]) -> dict[str, list[list[str]]]:
    """Catalog rows whose first field is their table, grouped by it (order kept)."""
    grouped: dict[str, list[list[str]]] = {}
    for table, *rest in rows:
        grouped.setdefault(table, []).append(rest)
    return grouped


# --- structure -------------------------------------------------------------------------

# Text compares byte by byte in SQLite (BINARY): collation "C" does the same.
_TYPES = {
    "INTEGER": "bigint",
    "REAL": "double precision",
    "FLOAT": "double precision",
    "TEXT": "text C",
}
_PUBLIC = "c.relnamespace = 'public'::regnamespace"
# pg_constraint.confdeltype as SQLite's foreign_key_list spells the action.
_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL"}


def test_baseline_applies_to_an_empty_database(server: str) -> None:
    psql = fresh_pg(server, "applies")
    tables = psql.rows("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert int(tables[0][0]) > 30


def test_same_tables(pg: Psql, schema: sqlite3.Connection) -> None:
    pg_tables = {
        r[0] for r in pg.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert pg_tables == set(sqlite_tables(schema))


def test_same_columns_types_and_defaults(pg: Psql, schema: sqlite3.Connection) -> None:
    columns = by_table(
        pg.rows(
            "SELECT table_name, column_name, data_type || coalesce(' ' || collation_name, ''),"
            " is_nullable, column_default, is_identity"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY table_name, ordinal_position"
        )
    )
    for table in sqlite_tables(schema):
        info = schema.execute(f'PRAGMA table_info("{table}")').fetchall()
        keys = [c for c in info if c[5]]
        # A lone INTEGER PRIMARY KEY is SQLite's rowid: an identity column here, never null.
        rowid_alias = keys[0][1] if len(keys) == 1 and keys[0][2].upper() == "INTEGER" else None
        want = [
            (c[1], _TYPES.get(c[2].upper(), c[2].lower()), bool(c[3] or c[5]), c[4])
            if c[1] != rowid_alias
            else (c[1], "bigint", True, "identity")
            for c in info
        ]
        got = [
            (name, kind, nullable == "NO", _pg_default(default, identity))
            for name, kind, nullable, default, identity in columns[table]
        ]
        extra = PG_ONLY_COLUMNS.get(table, [])
        assert [g[0] for g in got[len(want) :]] == extra, table
        assert got[: len(want)] == want, table


def _pg_default(default: str, identity: str) -> str | None:
    if identity == "YES":
        return "identity"
    if default == NULL:
        return None
    return default.split("::")[0]  # '' ::text -> '', as SQLite writes it


def test_same_primary_keys(pg: Psql, schema: sqlite3.Connection) -> None:
    keys = by_table(
        pg.rows(
            "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            f" WHERE i.indisprimary AND {_PUBLIC} ORDER BY c.relname, k.n"
        )
    )
    for table in sqlite_tables(schema):
        info = schema.execute(f'PRAGMA table_info("{table}")').fetchall()
        want = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5]]
        assert [r[0] for r in keys.get(table, [])] == want, table


def _sqlite_indexes(lite: sqlite3.Connection, table: str) -> set[tuple[Any, ...]]:
    """(name, unique, columns (None for an expression), partial) of the indexes made by
    CREATE INDEX: not those SQLite makes for a primary key."""
    found = set()
    for _, name, unique, origin, partial in lite.execute(f'PRAGMA index_list("{table}")'):
        if origin == "pk":
            continue
        columns = tuple(r[2] for r in lite.execute(f'PRAGMA index_info("{name}")'))
        found.add((name, bool(unique), columns, bool(partial)))
    return found


def _implicit_rowid(table: str, cols: str) -> tuple[str | None, ...]:
    """An index's columns as SQLite names them: a SQLite index ends with the rowid
    without saying so, PostgreSQL's runs indexes name it (0017_page_order.sql)."""
    columns = tuple(c if c != "-" else None for c in cols.split(","))
    if table == "runs" and len(columns) > 1 and columns[-1] == "rowid":
        return columns[:-1]
    return columns


def test_same_indexes_and_unique_constraints(pg: Psql, schema: sqlite3.Connection) -> None:
    indexes = by_table(
        pg.rows(
            "SELECT c.relname, x.relname, i.indisunique, i.indpred IS NOT NULL,"
            " array_to_string(array(SELECT coalesce(a.attname, '-')"
            "   FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)"
            "   LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            "   ORDER BY k.n), ',')"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_class x ON x.oid = i.indexrelid"
            f" WHERE NOT i.indisprimary AND {_PUBLIC}"
        )
    )
    for table in sqlite_tables(schema):
        got = {
            (name, unique == "t", _implicit_rowid(table, cols), p == "t")
            for name, unique, p, cols in indexes.get(table, [])
            if name not in PG_ONLY_INDEXES
        }
        assert got == _sqlite_indexes(schema, table), table


def test_same_foreign_keys(pg: Psql, schema: sqlite3.Connection) -> None:
    keys = by_table(
        pg.rows(
            "SELECT c.relname, a.attname, p.relname, pa.attname, f.confdeltype"
            " FROM pg_constraint f JOIN pg_class c ON c.oid = f.conrelid"
            " JOIN pg_class p ON p.oid = f.confrelid"
            " JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = f.conkey[1]"
            " JOIN pg_attribute pa ON pa.attrelid = f.confrelid AND pa.attnum = f.confkey[1]"
            f" WHERE f.contype = 'f' AND {_PUBLIC}"
        )
    )
    for table in sqlite_tables(schema):
        want = set()
        for fk in schema.execute(f'PRAGMA foreign_key_list("{table}")').fetchall():
            target = fk[4] or next(
                c[1] for c in schema.execute(f'PRAGMA table_info("{fk[2]}")') if c[5]
            )
            want.add((fk[3], fk[2], target, fk[6]))
        got = {(c, parent, target, _ON_DELETE[a]) for c, parent, target, a in keys.get(table, [])}
        assert got == want, table


def test_same_triggers(pg: Psql, schema: sqlite3.Connection) -> None:
    want = {
        (name, table)
        for name, table in schema.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
        )
        if not name.startswith("runs_fts")  # FTS5 upkeep: runs.search is generated instead
    }
    got = pg.rows(
        "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE NOT t.tgisinternal"
    )
    assert {(n, t) for n, t in got} == want


def test_search_vector_and_json_index(pg: Psql) -> None:
    """runs.search stands in for runs_fts (a text too long for a tsvector is cut, not
    refused); dataset_items_run takes SQLite's spelling, odd metadata included."""
    found = pg.rows(
        "BEGIN;"
        " INSERT INTO runs (id, status, started_at, prompt, response) VALUES"
        " ('a', 'running', 1, 'Hello Wörld', NULL), ('b', 'running', 2, NULL, 'hello'),"
        " ('c', 'running', 3, 'x', (SELECT string_agg(md5(i::text), ' ') || ' last'"
        "   FROM generate_series(1, 40000) i));"
        " INSERT INTO datasets (id, name, created_at) VALUES (1, 'd', 1);"
        " INSERT INTO dataset_items (dataset_id, idx, input, metadata) VALUES"
        """ (1, 0, '', '{"run_id": "a"}'), (1, 1, '', 'not json'), (1, 2, '', NULL),"""
        """ (1, 3, '', '{"run_id": "\\u0000"}'), (1, 4, '', '[1]');"""
        " SET LOCAL enable_seqscan = off;"
        " SELECT string_agg(id, ',' ORDER BY rowid) FROM runs"
        "  WHERE search @@ plainto_tsquery('simple', 'hello');"
        " SELECT count(*) FROM runs WHERE search @@ plainto_tsquery('simple', 'last');"
        " SELECT idx FROM dataset_items"
        "  WHERE (CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.run_id') END) = 'a';"
        " EXPLAIN (COSTS OFF) SELECT idx FROM dataset_items"
        "  WHERE (CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.run_id') END) = 'a';"
        " ROLLBACK;"
    )
    assert found[:3] == [["a,b"], ["0"], ["0"]]
    assert "dataset_items_run" in str(found[3:])


# --- the triggers' effect --------------------------------------------------------------

H, D = 3600, 86400
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
# Runs: several hours, days, models and sessions; a start before 1970 with a fraction
# (floor, not truncation); latencies for each kind of bucket; cost unknown (NULL), and
# an infinity whose opposite makes SQLite's sum NULL. Values that go through sum() are
# dyadic (SQLite 3.43+ sums with error compensation); 0.37 below checks that the
# triggers' additions keep SQLite's order ((total + new) - old).
_RUNS = [
    ("r1", "s1", "running", "m-a", T0, 10, 5, 0.25, None, "priced", 0),
    ("r2", "s1", "succeeded", "m-a", T0 + 60.5, 20, 7, 0.5, 1500.0, "priced", 0),
    ("r3", "s2", "failed", "m-b", T0 + H, 0, 0, None, 0.0, "unpriced", 1),
    ("r4", None, "queued", None, T0 + D + 0.75, 3, 4, 1.5, 0.5, None, 0),
    ("r5", "s2", "interrupted", "m-b", -1.5, 1, 1, 0.125, 1e16, "partial", 2),
    ("r6", "s3", "succeeded", "m-c", T0 + 2 * H, 2, 2, "{inf}", 250.25, "priced", 0),
    # 2^-29 ms: C's ln(x) / ln(2) puts it one bucket below the exact log2 (-465, not -464).
    ("r7", "s3", "succeeded", "m-c", T0 + 2 * H + 5, 2, 2, "-{inf}", 2.0**-29, "priced", 0),
]
_COLUMNS = (
    "id, session_id, status, model, started_at, input_tokens, output_tokens, cost_usd,"
    " latency_ms, cost_status, usage_unknown_calls"
)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str) and "{inf}" not in value:
        return "'" + value + "'"
    return repr(value) if isinstance(value, float) else str(value)


def _writes() -> list[str]:
    """The same statements for both databases (``{inf}`` is each one's infinity)."""
    out = [f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join(map(_literal, r))})" for r in _RUNS]
    evals = [
        ("r1", "thumbs", 1.0, 1, T0 + 10),
        ("r1", "score", 0.75, None, T0 + 20),
        ("r1", "score", 0.5, 0, T0 + H + 1),
        ("r3", "exact_match", None, 1, T0 + D),
        ("r5", "score", 0.25, 1, -0.5),
    ]
    out += [
        "INSERT INTO evaluations (run_id, metric, value, passed, source, created_at)"
        f" VALUES ({', '.join(map(_literal, (run, metric, value, passed, 'api', at)))})"
        for run, metric, value, passed, at in evals
    ]
    out += [
        "UPDATE runs SET last_seq = 9, response = 'streamed' WHERE id = 'r1'",  # no rollup
        "UPDATE runs SET input_tokens = 30, output_tokens = 12, cost_usd = 0.37 WHERE id = 'r1'",
        "UPDATE runs SET status = 'succeeded', latency_ms = 800.0, ended_at = 1.0 WHERE id = 'r1'",
        "UPDATE runs SET cost_usd = NULL, cost_status = 'unpriced' WHERE id = 'r2'",  # unknown
        "UPDATE runs SET cost_usd = 0.0625 WHERE id = 'r3'",  # unknown becomes known
        "UPDATE runs SET usage_unknown_calls = 0, status = 'succeeded' WHERE id = 'r3'",
        "UPDATE runs SET started_at = started_at + 7200 WHERE id = 'r2'",  # another hour
        "UPDATE runs SET started_at = started_at + 1 WHERE id = 'r4'",  # same hour: nothing moves
        "UPDATE runs SET model = 'm-z' WHERE id = 'r1'",  # its evaluations move too
        "UPDATE runs SET session_id = 's9', status = 'failed' WHERE id = 'r1'",
        "UPDATE runs SET session_id = NULL WHERE id = 'r3'",
        "UPDATE runs SET latency_ms = NULL WHERE id = 'r5'",
        "DELETE FROM evaluations WHERE metric = 'thumbs'",
        "DELETE FROM evaluations WHERE run_id = 'r3'",
        "DELETE FROM runs WHERE id IN ('r3', 'r4')",
        "DELETE FROM runs WHERE id = 'r7'",  # leaves r6's infinity alone in its rows
        f"INSERT INTO runs ({_COLUMNS}) VALUES ('r8', 's1', 'running', 'm-a', {T0 + 30},"
        " 1, 1, 0.25, 2.0, 'priced', 0)",
    ]
    return out


# The tables the triggers write, with their keys. run_sessions' ids match too here: no
# session is deleted, and a run of a known session takes no number from the sequence.
_COMPARED = {
    f"rollup_{t}_{g}": key
    for t, key in (
        ("runs", "period, model"),
        ("session", "session, period, model"),
        ("latency", "period, bucket"),
        ("evals", "period, metric, model, session"),
    )
    for g in ("hour", "day")
} | {"run_sessions": "name"}


def _select(table: str, order: str) -> str:
    return f"SELECT * FROM {table} ORDER BY {order}"


def _same(sqlite_value: Any, pg_text: str) -> bool:
    """A PostgreSQL cell (text) equals SQLite's, read as SQLite's type, to the bit."""
    if sqlite_value is None or pg_text == NULL:
        return sqlite_value is None and pg_text == NULL
    if isinstance(sqlite_value, float):
        return float(pg_text) == sqlite_value
    return type(sqlite_value)(pg_text) == sqlite_value


def _assert_same_rows(lite: sqlite3.Connection, pg: Psql, when: str) -> None:
    tables = _COMPARED
    pg_rows = by_table(
        pg.rows(
            "".join(f"SELECT '{t}', x.* FROM ({_select(t, o)}) x;\n" for t, o in tables.items())
        )
    )
    for table, order in tables.items():
        want = lite.execute(_select(table, order)).fetchall()
        got = pg_rows.get(table, [])
        assert len(got) == len(want), (when, table, want, got)
        for w, g in zip(want, got, strict=True):
            assert len(w) == len(g) and all(map(_same, w, g)), (when, table, w, g)


def _write_both(lite: sqlite3.Connection, pg: Psql, statements: list[str]) -> None:
    for sql in statements:
        lite.execute(sql.replace("{inf}", "1e999"))
    pg.run("".join(sql.replace("{inf}", "'Infinity'::float8") + ";\n" for sql in statements))


def test_rollups_match_row_for_row(server: str, lite: sqlite3.Connection) -> None:
    pg = fresh_pg(server, "rollups")
    writes, done = _writes(), 0
    for step, upto in enumerate((len(_RUNS), len(_RUNS) + 5, len(writes))):  # runs, evals, all
        _write_both(lite, pg, writes[done:upto])
        done = upto
        if step == 0:
            # +inf and -inf in one row: SQLite's sum is NULL (NaN), so must PostgreSQL's be.
            where = f"model = 'm-c' AND period = {int(T0 + 2 * H) // H * H}"
            cost = lite.execute(f"SELECT cost_usd FROM rollup_runs_hour WHERE {where}").fetchall()
            assert cost == [(None,)]
        _assert_same_rows(lite, pg, writes[upto - 1])


def test_multi_row_statements_match(server: str, lite: sqlite3.Connection) -> None:
    """One statement over many rows: SQLite fires per row at once, PostgreSQL at its end."""
    pg = fresh_pg(server, "statements")
    _write_both(
        lite,
        pg,
        _writes()[: len(_RUNS) + 5]
        + [
            "UPDATE runs SET model = 'm-q', cost_usd = coalesce(cost_usd, 0) + 0.5"
            " WHERE session_id IS NOT NULL AND id <> 'r6' AND id <> 'r7'",
            "UPDATE runs SET started_at = started_at + 86400, status = 'failed' WHERE id <> 'r6'",
            "DELETE FROM evaluations",
            "DELETE FROM runs WHERE model = 'm-q'",
        ],
    )
    _assert_same_rows(lite, pg, "multi-row")
