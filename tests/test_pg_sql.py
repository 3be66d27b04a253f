"""The SQLite spellings the store uses, as PostgreSQL reads them (app/store/postgres/sql.py),
and the connection layer's values: each translation is checked on a real server too."""

from __future__ import annotations

import math

import pytest

from app.store.postgres.sql import to_postgres


@pytest.mark.parametrize(
    "sqlite,postgres",
    [
        ("select * from runs where id = ?", "select * from runs where id = %s"),
        ("where period >= :start", "where period >= %(start)s"),
        ("where a like ? and b = 'x?%'", "where a ilike %s and b = 'x?%%'"),
        ('select "odd ""name""" from t where c = ?', 'select "odd ""name""" from t where c = %s'),
        ("select [name] from [t]", 'select "name" from "t"'),
        ("select x::text -- a comment?\n from t", "select x::text -- a comment?\n from t"),
        (
            "insert or ignore into s (name) values (?) returning name",
            "insert into s (name) values (%s) on conflict do nothing returning name",
        ),
        (
            "insert or replace into storage_probe (id, probed_at) values (1, ?)",
            "insert into storage_probe (id, probed_at) values (1, %s)"
            " on conflict (id) do update set probed_at = excluded.probed_at",
        ),
        ("set a = min(a, ?), b = max(b)", "set a = least(a, %s), b = max(b)"),
        ("select max(coalesce(a, 0), b)", "select greatest(coalesce(a, 0), b)"),
        ("cast(x as real)", "cast(x as double precision)"),
        (
            "CAST((p - ?) / 60 AS INTEGER)",
            "cast(trunc(cast((p - %s) / 60  as double precision)) as bigint)",
        ),
        ("BEGIN IMMEDIATE", "begin"),
        ("select ifnull(a, 0)", "select coalesce(a, 0)"),
    ],
)
def test_translation(sqlite, postgres):
    assert to_postgres(sqlite) == postgres


def test_an_unknown_insert_or_replace_is_refused():
    with pytest.raises(ValueError, match="REPLACE_KEYS"):
        to_postgres("insert or replace into runs (id) values (?)")


@pytest.fixture(scope="module")
def pg(postgres_template):
    from app.store.postgres.database import PgDatabase

    url, _ = postgres_template
    db = PgDatabase(url)
    db.conn.executescript((__import__("pathlib").Path("app/store/postgres/compat.sql")).read_text())
    yield db
    db.close()


def one(pg, sql, params=()):
    return tuple(pg.execute(sql, list(params)).fetchone())


def test_sqlite_meanings_on_a_real_server(pg):
    # total() is 0.0 over nothing, sum() NULL; comparisons add up as 1 and 0.
    assert one(pg, "select total(x), sum(x) from (select 1 as x where false) t") == (0.0, None)
    assert one(pg, "select sum(x > 1), 1 + (2 > 1) from (values (1), (2), (3)) t(x)") == (2, 2)
    # cast(... as integer) truncates toward zero, as SQLite does (PostgreSQL rounds).
    assert one(
        pg, "select cast(-2.7 as integer), cast(2.7 as integer), cast('3.9' as integer)"
    ) == (
        -2,
        2,
        3,
    )
    assert one(pg, "select instr('hello', 'l'), instr('hello', 'z')") == (3, 0)
    assert one(pg, "select round(2.345, 2), log(2, 8)") == (2.35, 3.0)
    doc = '{"a": {"b.c": 5, "s": "x"}, "n": null, "l": [1, 2]}'
    assert one(
        pg,
        "select json_extract(?, '$.a.\"b.c\"'), json_extract(?, '$.a.s'),"
        " json_extract(?, '$.n'), json_extract(?, '$.l[1]'), json_extract(?, '$.missing')",
        [doc] * 5,
    ) == ("5", "x", None, "2", None)
    assert one(pg, "select json_valid('{'), json_valid('[1]'), json_valid(null)") == (
        False,
        True,
        None,
    )
    assert one(pg, "select sum(v) from (values ('2'), ('3'), (null)) t(v)") == (5,)
    # The schema's text columns are COLLATE "C": LIKE ignores ASCII case only, as in SQLite.
    assert one(pg, """select 'A' like 'a', 'É' collate "C" like 'é'""") == (True, False)


def test_values_bind_and_read_back_as_with_sqlite(pg):
    pg.execute("create temporary table v (t text, n bigint, f double precision, b bytea)")
    pg.execute("insert into v values (?, ?, ?, ?)", ["a\x00b 100%", True, math.inf, b"\x00\x01"])
    pg.table("v").insert({"t": None, "n": False, "f": 1.5, "b": None})
    rows = [tuple(r) for r in pg.execute("select * from v order by n desc")]
    assert rows == [("a\ufffdb 100%", 1, math.inf, b"\x00\x01"), (None, 0, 1.5, None)]
    row = pg.execute("select n as x, f as x, t from v where ? is null limit 1", [None]).fetchone()
    assert row["x"] == 1 and row[1] == math.inf and row.keys() == ["x", "x", "t"]
    assert dict(row) == {"x": 1, "t": "a\ufffdb 100%"}
