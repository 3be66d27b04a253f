"""One SQLite writer thread, reads on a small thread pool, WAL mode.

Store functions are plain synchronous functions taking a sqlite-utils
``Database`` first. ``await store.write(fn, ...)`` runs ``fn`` on the single
writer thread inside a transaction; ``await store.read(fn, ...)`` runs it on a
reader thread. Nothing here blocks the event loop, and SQLite never sees two
writers from this process.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from app.store.migrations import apply_migrations

T = TypeVar("T")


def connect(path: Path | str) -> Database:
    """Open a connection with the pragmas every connection here needs."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only an OS
    # crash can lose the last transactions, and it keeps commits cheap.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return Database(conn)


class Store:
    """Owns the database file and the threads that touch it."""

    def __init__(self, path: Path | str, readers: int = 4) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._connections: list[Database] = []
        self._lock = threading.Lock()
        self.migrations_applied = self._writer.submit(self._migrate).result()

    def _db(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def _migrate(self) -> list[str]:
        return apply_migrations(self._db())

    def _write_call(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        db = self._db()
        with db.atomic():
            return fn(db, *args, **kwargs)

    def _read_call(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        return fn(self._db(), *args, **kwargs)

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._write_call, fn, args, kwargs)
        return await loop.run_in_executor(self._writer, call)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._read_call, fn, args, kwargs)
        return await loop.run_in_executor(self._readers, call)

    def write_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking write for code outside the event loop (CLI, start-up)."""
        return self._writer.submit(self._write_call, fn, args, kwargs).result()

    def read_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._readers.submit(self._read_call, fn, args, kwargs).result()

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
