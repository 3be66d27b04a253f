"""Group commit: writes share transactions, yet each keeps its own outcome and durability.

The store's writer (``app/store/writer.py``) commits whatever was queued in
one transaction. These tests hold it to what its callers rely on: a burst is
a few commits, not one per write; one write's error rolls back that write
only; a callback or an answer comes only after the commit, in queue order;
maintenance runs outside any transaction; and a process killed with SIGKILL
keeps every write it had acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlite_utils import Database

from app.store import Store
from app.store.db import StorageUnavailable


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "gc.db")
    s.write_sync(lambda db: db.execute("create table t (k integer primary key, v text)"))
    yield s
    s.close()


def insert(db: Database, k: int, v: str = "x") -> int:
    db.execute("insert into t (k, v) values (?, ?)", [k, v])
    return k


def rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("select k from t order by k")]


def test_a_burst_of_writes_is_a_few_commits(store: Store):
    async def burst() -> None:
        for k in range(1, 1000):
            store.queue(insert, k, wait=False)
        await store.write(insert, 1000)

    before = store.commits
    asyncio.run(burst())
    assert rows(store.path) == list(range(1, 1001))
    # One commit per batch, not per write.
    assert 1 <= store.commits - before < 50


def test_one_failing_write_rolls_back_only_itself(store: Store):
    def half_then_fail(db: Database) -> None:
        insert(db, 50)
        raise ValueError("bad input")

    async def batch() -> list[object]:
        futures = [store.queue(insert, 1), store.queue(half_then_fail), store.queue(insert, 2)]
        return await asyncio.gather(*futures, return_exceptions=True)

    one, failed, two = asyncio.run(batch())
    assert (one, two) == (1, 2)
    assert isinstance(failed, ValueError)
    assert rows(store.path) == [1, 2]  # 50 was rolled back with its write only


def test_callbacks_come_after_the_commit_in_queue_order(store: Store):
    seen: list[tuple[int, list[int]]] = []

    def done(result: object, error: BaseException | None) -> None:
        assert error is None
        # Another connection already sees the row: the callback follows the commit.
        seen.append((int(result), rows(store.path)))  # type: ignore[call-overload]

    async def queued() -> None:
        for k in range(1, 21):
            store.queue(insert, k, on_done=done, wait=False)
        await store.write(lambda db: None)

    asyncio.run(queued())
    assert [k for k, _ in seen] == list(range(1, 21))
    assert all(k in visible for k, visible in seen)


def test_a_storage_failure_fails_its_write_and_degrades_the_store(store: Store):
    def full(fn: object) -> None:
        if fn is insert:
            raise sqlite3.OperationalError("database or disk is full")

    store.before_write = full
    with pytest.raises(StorageUnavailable, match="disk is full"):
        store.write_sync(insert, 1)
    assert not store.health.ok
    store.before_write = None
    store.write_sync(insert, 2)
    assert store.health.ok
    assert rows(store.path) == [2]


def test_maintenance_runs_with_no_transaction_open(store: Store):
    store.write_sync(insert, 1)
    assert store.maintain_sync(lambda db: db.conn.in_transaction) is False
    store.maintain_sync(lambda db: db.execute("vacuum"))  # refused inside a transaction
    assert rows(store.path) == [1]


CHILD = textwrap.dedent(
    """
    import asyncio, itertools, sys
    from app.store import Store

    def insert(db, k):
        db.execute("insert into t (k, v) values (?, ?)", [k, "x" * 200])

    def acked(k):
        def done(result, error):
            if error is None:
                print(k, flush=True)
        return done

    async def writer(store, keys):
        # Like a recorder: pieces queued without waiting, then one awaited write.
        while True:
            for _ in range(9):
                k = next(keys)
                store.queue(insert, k, on_done=acked(k), wait=False)
            k = next(keys)
            await store.queue(insert, k, on_done=acked(k))

    async def main():
        store = Store(sys.argv[1])
        store.write_sync(lambda db: db.execute(
            "create table if not exists t (k integer primary key, v text)"))
        keys = itertools.count(1)
        await asyncio.gather(*(writer(store, keys) for _ in range(20)))

    asyncio.run(main())
    """
)


def test_a_process_killed_mid_burst_keeps_every_acknowledged_write(tmp_path: Path):
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "child.err").open("w"),
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.stdout is not None
    acked: list[int] = []
    deadline = time.monotonic() + 60
    while len(acked) < 5000 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    assert len(acked) >= 5000, (tmp_path / "child.err").read_text()[-2000:]
    stored = set(rows(path))
    assert not set(acked) - stored, "acknowledged writes were lost"


def test_the_recorder_folds_a_call_s_tokens_once_the_writer_is_quiet(store: Store):
    """Tokens are written one row each as they stream; after the answer, a deferrable
    write folds them into one row, and the log still reads back every token."""
    from agents.events import MessageAdded, RunFinished, RunStarted, TokenDelta
    from app.runs.recorder import Recorder
    from app.store.event_log import events_after
    from app.store.live import Broker
    from app.store.runs import create_run

    store.write_sync(create_run, {"id": "run1", "model": "m", "provider": "p", "prompt": "hi"})

    async def run() -> None:
        recorder = Recorder(store, Broker(), "run1")
        await recorder.emit(RunStarted(model="m", provider="p", params={}))
        for i in range(50):
            await recorder.emit(TokenDelta(text=f"t{i} ", run_output_tokens=i + 1))
        await recorder.emit(
            MessageAdded(role="assistant", content="".join(f"t{i} " for i in range(50)))
        )
        await recorder.emit(RunFinished(response="done"))
        await store.settle()  # the fold waits for a quiet writer: a few ms here

    asyncio.run(run())
    kinds = store.read_sync(
        lambda db: [r[0] for r in db.execute("select type from events where run_id = 'run1'")]
    )
    assert kinds.count("deltas") == 1 and "token" not in kinds
    events = store.read_sync(events_after, "run1", 0, 1000)
    assert [e["seq"] for e in events] == list(range(1, 54))
    assert "".join(e["payload"]["text"] for e in events if e["type"] == "token").startswith(
        "t0 t1 "
    )
