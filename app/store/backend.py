"""Which database the store talks to, and the errors either one raises.

SQLite in the data dir is the default; ``AGENTOP_DATABASE_URL=postgresql://…``
selects PostgreSQL (``app.store.postgres``). Store code is the same for both:
where a query has to differ, it asks :func:`is_postgres`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

try:  # the postgres extra
    import psycopg
except ImportError:  # pragma: no cover - the base install has SQLite only
    psycopg = None  # type: ignore[assignment]

# What a failed statement raises, whichever the database.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    (sqlite3.Error,) if psycopg is None else (sqlite3.Error, psycopg.Error)
)
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    (sqlite3.IntegrityError,)
    if psycopg is None
    else (sqlite3.IntegrityError, psycopg.errors.IntegrityError)
)


# pg_advisory_lock key of migrations and first-start work ("agentop" in ASCII, so it reads
# as ours in pg_locks): replicas starting together take turns.
MIGRATION_LOCK = 0x6167656E746F70


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0] in ("postgresql", "postgres")


def is_postgres(db: Any) -> bool:
    """Whether ``db`` (a store function's first argument) is a PostgreSQL connection."""
    return getattr(db, "dialect", "sqlite") == "postgresql"


def require_psycopg() -> None:
    if psycopg is None:
        raise RuntimeError(
            "AGENTOP_DATABASE_URL names PostgreSQL, but psycopg is not installed:"
            " pip install 'agentop-studio[postgres]'"
        )
