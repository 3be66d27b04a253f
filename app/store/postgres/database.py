"""A PostgreSQL connection that store code uses as it uses a sqlite-utils ``Database``.

Store functions take ``db`` and call ``db.execute(sql, params)``, ``db.query``,
``db.conn.execute`` / ``executemany`` and a few table helpers
(``db.table(name).insert(row).last_pk``, ``update``, ``upsert``, ``insert_all``,
``exists``). :class:`PgDatabase` answers the same calls on a psycopg 3 connection,
with the SQL translated once per text (``app.store.postgres.sql``) and rows that
read like ``sqlite3.Row`` (by name and by position, ``dict(row)``).

Why this and not SQLAlchemy: the store's queries are hand-tuned SQL that both
databases accept once the few spellings in ``sql.py`` are translated; one copy
of each query stays readable, and nothing else in the code changes.

Choices that keep SQLite's behaviour:

- values are bound client-side (``ClientCursor``): a parameter is a literal, so
  ``? is null`` and a text id compared with a number work as they do in SQLite,
  where server-side binding would need a type for every parameter;
- ``numeric`` results (``sum`` of integers) come back as ``int`` or ``float``,
  ``json`` results as text, and ``True``/``False`` are bound as 1/0 (the schema
  keeps SQLite's integer flags);
- the connection is in autocommit mode: a read is one statement, and the writer
  opens its batch transactions itself (``BEGIN`` … ``COMMIT``, as on SQLite);
- columns only PostgreSQL has (``rowid`` standing in for SQLite's, the search
  vector) are left out of every row, so ``select *`` reads the same on both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from functools import cached_property
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker
from psycopg.types.string import StrDumperUnknown

from app.store.postgres.sql import to_postgres

# PostgreSQL-only columns, never part of a row (see the module docstring).
HIDDEN_COLUMNS = frozenset({"rowid", "search"})

_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR, TransactionStatus.ACTIVE)

Params = Sequence[Any] | Mapping[str, Any] | None


class Row:
    """A result row read by position or by column name, like ``sqlite3.Row``."""

    __slots__ = ("_columns", "_values")

    def __init__(self, columns: _Columns, values: tuple[Any, ...]) -> None:
        self._columns = columns
        self._values = values

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._columns.index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._columns.names)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values and self.keys() == other.keys()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Row({list(zip(self._columns.names, self._values, strict=True))!r})"


class _Columns:
    """A result's column names, and where each name is first (as sqlite3.Row finds it)."""

    __slots__ = ("index", "names")

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.index: dict[str, int] = {}
        for n, name in enumerate(names):
            self.index.setdefault(name, n)


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    description = cursor.description or []
    keep = [i for i, col in enumerate(description) if col.name not in HIDDEN_COLUMNS]
    columns = _Columns([description[i].name for i in keep])
    if len(keep) == len(description):
        return lambda values: Row(columns, tuple(values))
    return lambda values: Row(columns, tuple(values[i] for i in keep))


class _NumberLoader(Loader):
    """``numeric`` as SQLite gives it: an int when whole, else a float."""

    def load(self, data: Any) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class _TextLoader(Loader):
    """``json``/``jsonb`` results as their text, as SQLite's JSON functions return it."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


class _FlagDumper(Dumper):
    """``True``/``False`` as 1/0: the schema keeps SQLite's integer flags."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _NulFreeText(StrDumperUnknown):
    """psycopg's dumper for ``str``, with NUL characters replaced.

    PostgreSQL's text cannot hold U+0000 (SQLite's can): ingested telemetry that
    carries one is stored with U+FFFD, the replacement character, in its place.
    """

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)


def _adapt(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(str, _NulFreeText)
    conn.adapters.register_loader("numeric", _NumberLoader)
    conn.adapters.register_loader("json", _TextLoader)
    conn.adapters.register_loader("jsonb", _TextLoader)
    conn.adapters.register_dumper(bool, _FlagDumper)


def _params(params: Params) -> Sequence[Any] | Mapping[str, Any]:
    # Always a sequence, even empty: psycopg reads placeholders (and the doubled %
    # of literals) only when it is given parameters.
    return () if params is None else params


class PgConnection:
    """The ``db.conn`` of store code: ``execute``, ``executemany``, transactions."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Params = None) -> psycopg.Cursor[Row]:
        return self.raw.execute(to_postgres(sql), _params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Row]:
        cursor = self.raw.cursor()
        cursor.executemany(to_postgres(sql), list(rows))
        return cursor

    def executescript(self, script: str) -> None:
        self.raw.execute(script)  # several statements, no parameters

    @property
    def in_transaction(self) -> bool:
        # UNKNOWN (a lost connection) is not "in a transaction": what ran is gone.
        return self.raw.info.transaction_status in _OPEN

    def rollback(self) -> None:
        if self.in_transaction:
            self.raw.execute("ROLLBACK")

    def commit(self) -> None:
        if self.in_transaction:
            self.raw.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()


class PgTable:
    """The sqlite-utils table calls store code makes, on PostgreSQL."""

    def __init__(self, db: PgDatabase, name: str) -> None:
        self.db = db
        self.name = name
        self.last_pk: Any = None

    @property
    def pks(self) -> list[str]:
        return self.db.primary_key(self.name)

    def exists(self) -> bool:
        return self.name in self.db.table_names()

    @property
    def columns_dict(self) -> dict[str, str]:
        """Column name -> PostgreSQL type name, in table order."""
        rows = self.db.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = current_schema() and table_name = ? order by ordinal_position",
            [self.name],
        )
        return {r[0]: r[1] for r in rows if r[0] not in HIDDEN_COLUMNS}

    @property
    def count(self) -> int:
        return int(_first(self.db.execute(f'select count(*) from "{self.name}"')))

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.db.query(f'select * from "{self.name}"')

    def insert(self, record: Mapping[str, Any], pk: str | None = None, **_: Any) -> PgTable:
        columns = list(record)
        key = self.pks
        sql = (
            f'insert into "{self.name}" ({", ".join(_quote(c) for c in columns)})'
            f" values ({', '.join('?' for _ in columns)})"
        )
        if key:
            sql += f' returning "{key[0]}"'
        cursor = self.db.execute(sql, [_cell(record[c]) for c in columns])
        self.last_pk = _first(cursor) if key else None
        return self

    def insert_all(self, records: Iterable[Mapping[str, Any]], **_: Any) -> PgTable:
        records = list(records)
        if not records:
            return self
        columns = list(records[0])
        sql = (
            f'insert into "{self.name}" ({", ".join(_quote(c) for c in columns)})'
            f" values ({', '.join('?' for _ in columns)})"
        )
        self.db.conn.executemany(sql, [[_cell(r.get(c)) for c in columns] for r in records])
        return self

    def update(self, pk_value: Any, updates: Mapping[str, Any], **_: Any) -> PgTable:
        [key] = self.pks
        sets = ", ".join(f"{_quote(c)} = ?" for c in updates)
        values = [_cell(v) for v in updates.values()]
        cursor = self.db.execute(
            f'update "{self.name}" set {sets} where {_quote(key)} = ?', [*values, pk_value]
        )
        if cursor.rowcount == 0:
            raise LookupError(f"{self.name}: no row with {key} = {pk_value!r}")
        self.last_pk = pk_value
        return self

    def upsert(self, record: Mapping[str, Any], pk: str, **_: Any) -> PgTable:
        columns = list(record)
        sets = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in columns if c != pk)
        conflict = f"do update set {sets}" if sets else "do nothing"
        self.db.execute(
            f'insert into "{self.name}" ({", ".join(_quote(c) for c in columns)})'
            f" values ({', '.join('?' for _ in columns)})"
            f" on conflict ({_quote(pk)}) {conflict}",
            [_cell(record[c]) for c in columns],
        )
        self.last_pk = record[pk]
        return self


def _first(cursor: psycopg.Cursor[Row]) -> Any:
    """The first value of the one row a statement returns."""
    row = cursor.fetchone()
    assert row is not None, "the statement returned no row"
    return row[0]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cell(value: Any) -> Any:
    """A value as sqlite-utils stores it: dicts, lists and tuples as JSON text."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=repr, ensure_ascii=False)
    return value


class PgDatabase:
    """One psycopg connection (autocommit, client-side binding) for store code."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        raw = psycopg.Connection.connect(
            url, autocommit=True, cursor_factory=ClientCursor, row_factory=_row_factory
        )
        _adapt(raw)
        self.url = url
        self.conn = PgConnection(raw)
        self._keys: dict[str, list[str]] = {}

    @property
    def broken(self) -> bool:
        """Whether the connection is lost (the store then opens a new one)."""
        return self.conn.raw.closed or self.conn.raw.broken

    def execute(self, sql: str, params: Params = None) -> psycopg.Cursor[Row]:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Params = None) -> Iterator[dict[str, Any]]:
        for row in self.execute(sql, params):
            yield dict(zip(row.keys(), row, strict=True))

    def table(self, name: str) -> PgTable:
        return PgTable(self, name)

    def __getitem__(self, name: str) -> PgTable:
        return PgTable(self, name)

    def table_names(self) -> list[str]:
        return [
            r[0]
            for r in self.execute(
                "select table_name from information_schema.tables"
                " where table_schema = current_schema()"
            )
        ]

    @cached_property
    def _primary_keys(self) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {}
        rows = self.execute(
            "select t.relname, a.attname from pg_index i"
            " join pg_class t on t.oid = i.indrelid"
            " join pg_attribute a on a.attrelid = t.oid and a.attnum = any(i.indkey)"
            " where i.indisprimary and t.relnamespace = current_schema()::regnamespace"
            " order by t.relname, array_position(i.indkey::int2[], a.attnum)"
        )
        for table, column in rows:
            keys.setdefault(table, []).append(column)
        return keys

    def primary_key(self, table: str) -> list[str]:
        return self._primary_keys.get(table, [])

    def close(self) -> None:
        self.conn.close()
