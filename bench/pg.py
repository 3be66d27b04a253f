"""PostgreSQL for the benchmarks: a throwaway server, fresh databases, sizes and counts.

``with postgres_server(url) as server:`` yields ``url`` when one is given (a server
the user runs), else starts a new cluster from Debian's binaries in a temp dir
(``tests/postgres_server.py``, the suite's own) and stops it at the end. Unlike
the suite's, the benchmark's server keeps ``fsync`` on: a figure for durable
ingest must pay for durable commits, as SQLite's does. Everything else is
PostgreSQL's default configuration (``shared_buffers`` 128 MB), on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

_names = itertools.count(1)
# Durable commits, as SQLite's: a benchmark server keeps PostgreSQL's defaults for these.
DURABLE = {"fsync": "on", "synchronous_commit": "on"}


@contextmanager
def postgres_server(url: str | None = None) -> Iterator[str]:
    """The URL of a PostgreSQL server for the duration of the block (a throwaway one
    unless ``url`` names one)."""
    if url:
        yield url
        return
    from tests.postgres_server import start_postgres

    server, stop, _ = start_postgres(DURABLE)
    try:
        yield server
    finally:
        stop()


def fresh_database(server: str, label: str) -> str:
    """Create an empty database on ``server``'s cluster; return its URL."""
    name = f"bench_{label}_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return f"{server.rpartition('/')[0]}/{name}"


def drop_database(server: str, url: str) -> None:
    """Drop the database of ``url`` (made by :func:`fresh_database`), closing its sessions."""
    name = url.rpartition("/")[2]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def scalar(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row of ``sql`` on a new connection."""
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def disk_usage(url: str) -> list[tuple[str, int]]:
    """Bytes of each table with its indexes and TOAST (``pg_total_relation_size``),
    largest first, after a ``VACUUM`` so dead rows of the load do not count."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum")
        rows = conn.execute(
            "select c.relname, pg_total_relation_size(c.oid) from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where c.relkind = 'r' and n.nspname = 'public' order by 2 desc"
        ).fetchall()
    return [(str(name), int(size)) for name, size in rows]


def server_version(url: str) -> str:
    """``PostgreSQL 15.x`` of the server at ``url``."""
    return "PostgreSQL " + str(scalar(url, "show server_version")).split()[0]
