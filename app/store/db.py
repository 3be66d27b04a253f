"""One SQLite writer thread with group commit, reads on a small thread pool, WAL mode.

Store functions are plain synchronous functions taking a sqlite-utils
``Database`` first. ``await store.write(fn, ...)`` runs ``fn`` on the single
writer thread, in a savepoint of a transaction shared with the other writes
queued meanwhile (``app.store.writer``), and returns once that transaction is
committed; ``await store.read(fn, ...)`` runs it on a reader thread. Nothing
here blocks the event loop, and SQLite never sees two writers from this
process.

When SQLite cannot write (disk full, I/O error, read-only file) every call
raises :class:`StorageUnavailable` naming the cause, and the store is
*degraded* until a later write succeeds: then it is healthy again by itself,
and the ends of runs that could not be recorded meanwhile are written (they
are also kept in a small file next to the database, for the next start).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlite_utils import Database

from app.store.backend import DATABASE_ERRORS, is_postgres_url, require_psycopg
from app.store.failures import fail_active_run, touch_probe
from app.store.memory import IdleTrim, bound_malloc_retention
from app.store.migrations import apply_migrations
from app.store.writer import Chain, Done, GroupWriter, Write

T = TypeVar("T")
log = logging.getLogger(__name__)

# Primary result codes (extended codes keep them in the low byte) that mean
# the store cannot write, and how a person would say it.
_CAUSES = {
    sqlite3.SQLITE_FULL: "the database disk is full",
    sqlite3.SQLITE_IOERR: "a disk I/O error on the database",
    sqlite3.SQLITE_READONLY: "the database file is read-only",
    sqlite3.SQLITE_CANTOPEN: "the database file cannot be opened",
    sqlite3.SQLITE_PERM: "access to the database file is denied",
    sqlite3.SQLITE_CORRUPT: "the database file is corrupt",
    sqlite3.SQLITE_NOTADB: "the database file is corrupt",
}
# For errors that carry no code (raised by hand, or by an older sqlite3 module).
_MESSAGES = {
    "database or disk is full": sqlite3.SQLITE_FULL,
    "disk i/o error": sqlite3.SQLITE_IOERR,
    "readonly database": sqlite3.SQLITE_READONLY,
    "unable to open database file": sqlite3.SQLITE_CANTOPEN,
    "malformed": sqlite3.SQLITE_CORRUPT,
}
UNENDED_FILE = "unended-runs.json"


class StorageUnavailable(RuntimeError):
    """SQLite cannot write: the app answers 503 with ``Retry-After`` and this message."""

    retry_after_s = 30

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(f"the studio cannot write to its database: {cause}")


def storage_failure(exc: Exception) -> StorageUnavailable | None:
    """The :class:`StorageUnavailable` that ``exc`` means, or None for any other error."""
    if not isinstance(exc, sqlite3.Error):
        return postgres_failure(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        text = str(exc).lower()
        code = next((c for words, c in _MESSAGES.items() if words in text), None)
    cause = _CAUSES.get(code & 0xFF) if code is not None else None
    return StorageUnavailable(cause) if cause else None


def postgres_failure(exc: Exception) -> StorageUnavailable | None:
    """What a PostgreSQL error means for writing: the server gone, a full disk, or nothing."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate == "53100":
        return StorageUnavailable("the database server's disk is full")
    if sqlstate.startswith("08") or (sqlstate == "" and type(exc).__name__ == "OperationalError"):
        return StorageUnavailable("the database server cannot be reached")
    if sqlstate in ("57P01", "57P02", "57P03"):
        return StorageUnavailable("the database server is shutting down or starting")
    if sqlstate == "25006":
        return StorageUnavailable("the database is read-only (a standby?)")
    return None


@dataclass(frozen=True)
class StorageHealth:
    """Whether the store can write; ``cause`` and ``since`` say why not and since when."""

    cause: str | None = None
    since: float | None = None

    @property
    def ok(self) -> bool:
        return self.cause is None


def connect(path: Path | str) -> Database:
    """Open a connection with the pragmas every connection here needs."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    # Deleted runs (retention) give their pages back a few at a time. It must come
    # before WAL: it only takes effect on a file that has no tables yet (or after a
    # VACUUM, which app.store.retention does once for an older studio).
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only an OS
    # crash can lose the last transactions, and it keeps commits cheap.
    conn.execute("PRAGMA synchronous=NORMAL")
    # The WAL is checkpointed when the writer is quiet, by a checkpointer thread on its
    # own connection (app.store.writer), not inside whichever commit crosses 1,000
    # pages: a checkpoint syncs the file.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    # ... and the WAL file is cut back to this size once a checkpoint let it restart.
    conn.execute("PRAGMA journal_size_limit=16777216")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return Database(conn)


@contextmanager
def write_transaction(db: Database) -> Iterator[None]:
    """One write, all or nothing, holding the write lock from its first statement.

    ``BEGIN IMMEDIATE``, not sqlite-utils' deferred ``BEGIN``: a deferred
    transaction that reads before it writes cannot take the write lock once
    another process (``agentop run`` beside ``serve``) has committed since its
    read, and SQLite then answers "database is locked" at once, without the
    busy timeout. Taking the lock first makes it wait its turn instead.
    """
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.conn.execute("COMMIT")
    except BaseException:
        db.conn.rollback()  # a no-op if the error already ended the transaction
        raise


def _nothing(db: Database) -> None:
    """An empty write."""


def answers(db: Database) -> bool:
    """Whether the database answers a query (readiness)."""
    return db.execute("select 1").fetchone() is not None


class Store:
    """Owns the database file, the group-commit writer thread and the reader threads."""

    def __init__(self, path: Path | str, readers: int = 4, url: str | None = None) -> None:
        """A store in the SQLite file ``path``, or in PostgreSQL at ``url`` when given
        (``path``'s folder then only keeps the list of unended runs)."""
        self.path = Path(path)
        self.url = url if is_postgres_url(url) else None
        if url and not self.url:
            raise ValueError(f"not a PostgreSQL URL: {url.split('://', 1)[0]}://…")
        if self.url:
            require_psycopg()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.health = StorageHealth()
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        # Big reads (a full-text search for a common word) must not leave the memory
        # they freed resident: app.store.memory says why and how.
        bound_malloc_retention()
        self._idle_trim = IdleTrim(self._readers)
        self._connections: list[Database] = []
        self._lock = threading.Lock()
        # Runs whose end could not be written: run id -> (at, error). Writer thread only.
        self._unended: dict[str, tuple[float, str]] = {}
        self._writer = GroupWriter(
            self._db,
            storage_error=self._failed,
            after_commit=self._after_commit,
            checkpoints=self.url is None,
        )
        self.migrations_applied = self._writer.call(self._migrate, alone=True)
        self._writer.call(self._load_unended, alone=True)

    @property
    def before_write(self) -> Callable[[Callable[..., Any]], None] | None:
        """Test seam: called on the writer thread with each write function before it runs;
        tests make it raise the error SQLite gives on a full disk."""
        return self._writer.before_write

    @before_write.setter
    def before_write(self, hook: Callable[[Callable[..., Any]], None] | None) -> None:
        self._writer.before_write = hook

    @property
    def commits(self) -> int:
        """Transactions committed by the writer so far (one per batch)."""
        return self._writer.commits

    @property
    def dialect(self) -> str:
        return "postgresql" if self.url else "sqlite"

    def _db(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is not None and getattr(db, "broken", False):
            # The server went away: this thread connects anew on its next call.
            with self._lock:
                self._connections.remove(db)
            db = None
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def _connect(self) -> Database:
        if self.url is None:
            return connect(self.path)
        from app.store.postgres.database import PgDatabase  # the postgres extra

        return cast(Database, PgDatabase(self.url))

    def _migrate(self, db: Database) -> list[str]:
        if self.url is None:
            return apply_migrations(db)
        from app.store.postgres.migrate import apply_pg_migrations

        return apply_pg_migrations(cast(Any, db))

    def _failed(self, exc: Exception) -> StorageUnavailable | None:
        failure = storage_failure(exc)
        if failure is not None and self.health.cause != failure.cause:
            log.error("storage unavailable: %s (%s)", failure.cause, exc)
            self.health = StorageHealth(failure.cause, time.time())
        return failure

    def _after_commit(self, ok: bool) -> None:
        """After each batch, on the writer thread: write pending run ends, maybe recover."""
        if not ok:
            return
        if self._unended:
            self._end_unended()
        # A small write may fit where a larger one did not: healthy only with nothing pending.
        if not self.health.ok and not self._unended:
            log.warning("storage recovered: writes succeed again")
            self.health = StorageHealth()

    def _read_call(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        try:
            return fn(self._db(), *args, **kwargs)
        except DATABASE_ERRORS as exc:
            failure = self._failed(exc)
            if failure is None:
                raise
            raise failure from exc

    def queue(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Done | None = None,
        wait: bool = True,
        idle: bool = False,
        chain: Chain | None = None,
    ) -> asyncio.Future[Any] | None:
        """Queue ``fn(db, *args)`` for the next batch; ``on_done(result, error)`` runs on this
        loop once the batch is committed (or failed), before the returned future settles.

        With ``wait=False`` no future is made: the caller learns the outcome from
        ``on_done`` only (the recorder's token writes, which nothing awaits one by one).
        With ``idle=True`` the write may wait for a moment when nothing else is queued
        (compaction, which no caller waits for). Writes of one ``chain`` (a run's events)
        are not run once an earlier one failed (``writer.Chain``).
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future() if wait else None
        write = Write(
            fn, args, {}, loop=loop, future=future, on_done=on_done, idle=idle, chain=chain
        )
        self._writer.submit(write)
        return future

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args)`` in the next batch; return its result once it is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writer.submit(Write(fn, args, kwargs, loop=loop, future=future))
        return await future

    async def flush(self) -> None:
        """Wait until every write queued so far is committed (deferrable ones aside)."""
        await self.write(_nothing)  # the writer commits in queue order

    async def settle(self) -> None:
        """Wait until every write queued so far, deferrable ones included, is done."""
        barrier = self.queue(_nothing, idle=True)  # deferred writes run in queue order
        assert barrier is not None  # wait=True: there is a future
        await barrier

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._read_call, fn, args, kwargs)
        self._idle_trim.started()
        try:
            return await loop.run_in_executor(self._readers, call)
        finally:
            self._idle_trim.finished(loop)

    async def maintain(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args)`` on the writer thread between batches, no transaction open.

        For what SQLite refuses inside a transaction: VACUUM, ``incremental_vacuum``,
        ``wal_checkpoint``, some pragmas. Every write waits meanwhile: keep it short.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writer.submit(Write(fn, args, kwargs, loop=loop, future=future, alone=True))
        return await future

    def write_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking write for code outside the event loop (CLI, start-up)."""
        return self._writer.call(fn, *args, **kwargs)

    def maintain_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking :meth:`maintain`, for code outside the event loop."""
        return self._writer.call(fn, *args, alone=True, **kwargs)

    def read_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._readers.submit(self._read_call, fn, args, kwargs).result()

    async def probe(self) -> StorageHealth:
        """Try one small write (and any pending run ends): a degraded store recovers here."""
        try:
            await self.write(touch_probe, time.time())
        except StorageUnavailable:
            pass
        return self.health

    # --- runs whose end could not be recorded -------------------------------------------

    async def remember_unended(self, run_id: str, at: float, error: str) -> None:
        """Keep a run's failed end to write once the store can write again (or at next start)."""
        await self.maintain(self._remember, run_id, at, error)

    def unended(self) -> list[str]:
        """Ids of runs whose end is still waiting to be written."""
        return list(self._unended)

    def _remember(self, db: Database, run_id: str, at: float, error: str) -> None:
        self._unended[run_id] = (at, error)
        self._save_unended()

    def _unended_path(self) -> Path:
        return self.path.parent / UNENDED_FILE

    def _save_unended(self) -> None:
        path = self._unended_path()
        try:
            if not self._unended:
                path.unlink(missing_ok=True)
                return
            entries = [{"run_id": r, "at": at, "error": e} for r, (at, e) in self._unended.items()]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entries))
            tmp.replace(path)
        except OSError as exc:  # the same full disk: the start-up sweep is the last resort
            log.error("could not save the list of unended runs to %s: %s", path, exc)

    def _load_unended(self, db: Database) -> None:
        path = self._unended_path()
        try:
            entries = json.loads(path.read_text()) if path.exists() else []
            self._unended = {e["run_id"]: (float(e["at"]), str(e["error"])) for e in entries}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("ignoring unreadable %s: %s", path, exc)
        if self._unended:
            self._end_unended()

    def _end_unended(self) -> None:
        db = self._db()
        for run_id, (at, error) in list(self._unended.items()):
            try:
                with write_transaction(db):
                    fail_active_run(db, run_id, at, error)
            except DATABASE_ERRORS as exc:
                log.error("could not yet record the end of run %s: %s", run_id, exc)
                self._failed(exc)
                break
            del self._unended[run_id]
            log.warning("recorded the end of run %s (failed: %s)", run_id, error)
        self._save_unended()

    def close(self) -> None:
        self._writer.stop()
        self._idle_trim.cancel()
        self._readers.shutdown(wait=True)
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
