"""Group commit: one writer thread that commits whatever is queued in one transaction.

Every write of the studio (an agent's event, an OTLP request's spans, a key
touched at login) is a function ``fn(db, *args)`` put on one queue. The
writer thread takes what is there (all that arrived while the last commit
ran, at most ``MAX_BATCH`` writes or ``MAX_BATCH_S`` of work), runs each in
a SAVEPOINT of one ``BEGIN IMMEDIATE`` transaction and commits once. Only
then are the callers told, all of them with one wake-up of their event
loop, in the order they were queued: a write's result (or ``on_done``
callback) never arrives before it is durable, and never before an earlier
write's.

Why savepoints: a function that raises (a bad row, a constraint) rolls back
its own changes only, and only its caller gets the exception; the batch
goes on. A storage failure (disk full, I/O error) is the store's, not the
function's: it is reported through ``on_failure`` so the store can say it is
degraded.

A write queued as ``idle`` (compaction: folding a model call's token rows)
is set aside and runs alone once the writer has been quiet for ``QUIET_S``,
or after ``MAX_IDLE_WAIT_S`` under constant load, then one at a time between
live batches: compaction never holds up the live writes of streaming runs
for more than one fold.

The WAL is checkpointed when the writer is quiet, by a thread of its own on
its own connection: a checkpoint syncs the database file (10 ms and more on
a busy VM), and in WAL mode a PASSIVE checkpoint does not block the writer,
so a burst that starts meanwhile is committed at once. Under load without
quiet moments the writer checkpoints itself every ``CHECKPOINT_FORCED``
commits, between batches, so that the WAL can restart and cannot grow
without bound.

Why a thread and one queue rather than ``run_in_executor`` per write: the
hop to a thread and back costs 50-100 µs on a small VM, more than the SQL of
a token's row. Here a burst of writes costs one hop and one commit.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from app.store.backend import DATABASE_ERRORS

log = logging.getLogger(__name__)

# A batch ends when this many writes ran, or after this much time spent running them
# (so a write queued behind a burst waits a few ms at most for its commit).
MAX_BATCH = 2000
MAX_BATCH_S = 0.005
# A deferrable write waits until the writer has had nothing else to do for QUIET_S,
# but not longer than MAX_IDLE_WAIT_S (under constant load).
QUIET_S = 0.005
MAX_IDLE_WAIT_S = 0.25
# The WAL is checkpointed by the writer when quiet after this many commits, and
# whatever the load after CHECKPOINT_FORCED (so the WAL cannot grow without bound).
CHECKPOINT_EVERY = 50
CHECKPOINT_FORCED = 1000

# on_done(result, error): exactly one of them is set (result may be None).
Done = Callable[[Any, BaseException | None], None]


@dataclass(eq=False)
class Chain:
    """Writes that build on one another in queue order (one run's events).

    Once one of them fails (a storage failure, or its own error), the later
    ones fail with the same error without running, so a run's log never goes
    on past an event it lost: callers that do not wait for each write (the
    recorder) learn of the failure a few writes later, and what is stored up
    to then has no hole.
    """

    failure: BaseException | None = None


@dataclass(eq=False)
class Write:
    """One queued call: ``fn(db, *args, **kwargs)``, in a batch or (``alone``) outside one."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[Any] | concurrent.futures.Future[Any] | None = None
    on_done: Done | None = None
    alone: bool = False  # maintenance: runs with no transaction open (VACUUM, pragmas)
    idle: bool = False  # deferrable (compaction): runs alone when nothing else waits
    chain: Chain | None = None


_STOP = object()


class GroupWriter:
    """The writer thread and its queue. See the module docstring."""

    def __init__(
        self,
        connection: Callable[[], Database],
        *,
        before_write: Callable[[Callable[..., Any]], None] | None = None,
        storage_error: Callable[[Exception], BaseException | None],
        after_commit: Callable[[bool], None],
        checkpoints: bool = True,
    ) -> None:
        self._connection = connection
        # Test seam (Store.before_write): called with each function before it runs.
        self.before_write = before_write
        self._storage_error = storage_error
        self._after_commit = after_commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._carry: Any = None  # taken from the queue, left for the next batch
        self._deferred: collections.deque[tuple[float, Write]] = collections.deque()
        self._last_live = 0.0  # when the last write that is not deferrable was taken
        self._deferred_last = False  # whether the last batch was a deferred write
        # SQLite's WAL is checkpointed here; PostgreSQL checkpoints by itself.
        self._checkpoints = checkpoints
        self._checkpointed_at = 0  # self.commits at the last WAL checkpoint
        self._checkpoint_wanted = threading.Event()
        # The checkpointer's last checkpoint left frames behind (commits meanwhile): the
        # writer finishes it when quiet, so the WAL can restart (and shrink) as before.
        self._catch_up = False
        self.commits = 0  # batches committed (benchmarks and tests count them)
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="sqlite-writer", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
        )
        if checkpoints:
            self._checkpointer.start()

    # --- the callers' side ---------------------------------------------------------------

    def submit(self, write: Write) -> None:
        if self._stopped:
            # As a closed executor does: a caller after close() must not wait forever.
            raise RuntimeError("the store is closed")
        self._queue.put(write)

    def call(self, fn: Callable[..., Any], *args: Any, alone: bool = False, **kwargs: Any) -> Any:
        """Run ``fn`` on the writer thread and wait (for code outside the event loop)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.submit(Write(fn, args, kwargs, future=future, alone=alone))
        return future.result()

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(_STOP)
        self._thread.join()
        self._checkpoint_wanted.set()  # with _stopped set: the checkpointer ends
        if self._checkpoints:
            self._checkpointer.join()
        # Writes queued by another thread between the flag and the stop are refused too.
        while (item := self._next(block=False)) is not None:
            if item is not _STOP:
                _deliver([(item, None, RuntimeError("the store is closed"))])

    # --- the writer thread ----------------------------------------------------------------

    def _next(self, block: bool, timeout: float | None = None) -> Any:
        """The next write to run now; deferrable ones are set aside on the way."""
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        while True:
            try:
                item = self._queue.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return None
            if item is _STOP or not item.idle:
                self._last_live = time.monotonic()
                return item
            self._deferred.append((time.monotonic(), item))
            if block:
                # Back to the loop once quiet, to run it: waiting on for a live write
                # (timeout None) would hold it until the next one arrives, or forever.
                timeout = QUIET_S

    def _idle_turn(self) -> bool:
        """Whether a deferred write runs now: the writer has been quiet, or it waited too long."""
        if not self._deferred:
            return False
        now = time.monotonic()
        live_waiting = self._carry is not None or not self._queue.empty()
        if not live_waiting and now - self._last_live > QUIET_S:
            return True
        if now - self._deferred[0][0] <= MAX_IDLE_WAIT_S:
            return False
        # Overdue under load: one deferred write, then the live writes queued meanwhile.
        # Back to back, the folds of 20 calls that ended together held every streaming
        # run's next commit for 20 folds (the SSE p99 of bench/recording.py).
        return not (self._deferred_last and live_waiting)

    def _checkpoint_due(self) -> bool:
        """Whether the writer checkpoints now, itself (see the module docstring)."""
        if not self._checkpoints:
            return False
        since = self.commits - self._checkpointed_at
        if since >= CHECKPOINT_FORCED:
            return True
        quiet = time.monotonic() - self._last_live > QUIET_S
        if not (quiet and self._queue.empty() and self._carry is None):
            return False
        if self._catch_up and not self._checkpoint_wanted.is_set():
            self._catch_up = False
            return True  # what is left is small: the frames committed during the last one
        if since >= CHECKPOINT_EVERY:
            self._checkpointed_at = self.commits
            self._checkpoint_wanted.set()  # the checkpointer's turn; the writer goes on
        return False

    def _checkpoint(self) -> None:
        self._checkpointed_at = self.commits
        _checkpoint(self._connection())

    def _checkpoint_loop(self) -> None:
        """The checkpointer thread: one PASSIVE checkpoint each time the writer asks."""
        while True:
            self._checkpoint_wanted.wait()
            self._checkpoint_wanted.clear()
            if self._stopped:
                return
            # On this thread's own connection; a PASSIVE checkpoint leaves the frames that
            # were committed meanwhile (SQLite says how many it could not copy).
            if not _checkpoint(self._connection()):
                self._catch_up = True

    def _loop(self) -> None:
        while True:
            if self._checkpoint_due():
                self._checkpoint()
                continue
            if self._idle_turn():
                # Alone in its batch: a burst of them never delays a live write by more
                # than one of them.
                self._batch(self._deferred.popleft()[1], more=False)
                self._deferred_last = True
                continue
            # With deferred writes waiting, wake up in time to see the writer quiet.
            waiting = self._deferred or (self._checkpoints and self.commits > self._checkpointed_at)
            item = self._next(block=True, timeout=QUIET_S if waiting else None)
            if item is None:
                continue
            if item is _STOP:
                while self._deferred:  # compaction queued before the stop is still done
                    self._batch(self._deferred.popleft()[1], more=False)
                return
            self._deferred_last = False
            if item.alone:
                self._alone(item)
                continue
            self._batch(item)

    def _alone(self, item: Write) -> None:
        try:
            result = item.fn(self._connection(), *item.args, **item.kwargs)
        except BaseException as exc:  # delivered to the caller, as any write's error
            _deliver([(item, None, self._as_failure(exc))])
        else:
            _deliver([(item, result, None)])

    def _as_failure(self, exc: BaseException) -> BaseException:
        if isinstance(exc, DATABASE_ERRORS):
            return self._storage_error(exc) or exc
        return exc

    def _batch(self, first: Write, more: bool = True) -> None:
        db = self._connection()
        conn = db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except DATABASE_ERRORS as exc:
            # Nothing can be written now (read-only file, locked past the busy timeout):
            # every queued write is told so, one batch at a time.
            failure = self._as_failure(exc)
            self._after_commit(False)
            _deliver(_failed([first], failure))
            return
        done: list[tuple[Write, Any, BaseException | None]] = []
        storage_failed = False
        started = time.perf_counter()
        item: Any = first
        while True:
            try:
                outcome, storage = self._run_one(db, item)
            except _TransactionLost as lost:  # what ran before in this batch is lost too
                failure = self._as_failure(lost.error)
                self._after_commit(False)
                _deliver(_failed([*(w for w, _, _ in done), item], failure))
                return
            done.append(outcome)
            storage_failed |= storage
            if not more or len(done) >= MAX_BATCH or time.perf_counter() - started > MAX_BATCH_S:
                break
            item = self._next(block=False)
            if item is None:
                break
            if item is _STOP or item.alone:
                self._carry = item  # a stop or a maintenance call waits for this commit
                break
        try:
            conn.execute("COMMIT")
        except DATABASE_ERRORS as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = self._as_failure(exc)
            self._after_commit(False)
            _deliver(_failed([w for w, _, _ in done], failure))
            return
        self.commits += 1
        self._after_commit(not storage_failed)
        _deliver(done)

    def _run_one(
        self, db: Database, item: Write
    ) -> tuple[tuple[Write, Any, BaseException | None], bool]:
        """Run one write in its savepoint: its outcome, and whether it met a storage failure."""
        chain = item.chain
        if chain is not None and chain.failure is not None:
            return (item, None, chain.failure), False  # an earlier write of its chain was lost
        conn = db.conn
        conn.execute("SAVEPOINT w")
        try:
            if self.before_write is not None:
                self.before_write(item.fn)
            result = item.fn(db, *item.args, **item.kwargs)
        except BaseException as exc:
            if not conn.in_transaction:
                raise _TransactionLost(exc) from exc
            conn.execute("ROLLBACK TO w")
            conn.execute("RELEASE w")
            failure = self._as_failure(exc)
            # A storage failure is the store's; any other error (a constraint, a bug) is
            # the function's own, and its caller's problem only.
            if chain is not None:
                chain.failure = failure
            return (item, None, failure), failure is not exc
        conn.execute("RELEASE w")
        return (item, result, None), False


def _failed(
    writes: list[Write], failure: BaseException
) -> list[tuple[Write, Any, BaseException | None]]:
    """The outcomes of ``writes`` lost to a storage failure; their chains stop there."""
    for write in writes:
        if write.chain is not None and write.chain.failure is None:
            write.chain.failure = failure
    return [(write, None, failure) for write in writes]


def _checkpoint(db: Database) -> bool:
    """A PASSIVE checkpoint; whether it copied every frame of the WAL."""
    try:
        busy, frames, copied = db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error as exc:  # the next one tries again; the WAL keeps everything
        log.warning("WAL checkpoint failed: %s", exc)
        return False
    return not busy and frames == copied


class _TransactionLost(Exception):
    """A write's error ended the whole transaction (SQLite rolled it back)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _deliver(outcomes: list[tuple[Write, Any, BaseException | None]]) -> None:
    """Tell each caller its outcome: one call per event loop, in queue order."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Write, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        write = outcome[0]
        if write.loop is None:
            _settle(*outcome)
        else:
            by_loop.setdefault(write.loop, []).append(outcome)
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, batch)
        except RuntimeError:  # the loop was closed meanwhile: nobody is waiting any more
            log.debug("dropped %d write outcomes for a closed event loop", len(batch))


def _settle_all(batch: list[tuple[Write, Any, BaseException | None]]) -> None:
    for outcome in batch:
        _settle(*outcome)


def _settle(write: Write, result: Any, error: BaseException | None) -> None:
    if write.on_done is not None:
        try:
            write.on_done(result, error)
        except Exception:  # a callback's bug must not keep the others from running
            log.exception("write callback %r failed", write.on_done)
    future = write.future
    if future is None or future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
