"""Group commit: writes share transactions, yet each keeps its own outcome and durability.

The store's writer (``app/store/writer.py``) commits whatever was queued in
one transaction. These tests hold it to what its callers rely on: a burst is
a few commits, not one per write; one write's error rolls back that write
only; a callback or an answer comes only after the commit, in queue order;
maintenance runs outside any transaction, and WAL checkpoints beside the
writer; a process killed with SIGKILL keeps every write it had acknowledged.
The recorder's streamed pieces are a few rows while they stream, one once
their call is folded (or the run cut off), and read back exactly either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from app.store import Store
from app.store.db import StorageUnavailable
from app.store.writer import Chain


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
        return await asyncio.gather(*[f for f in futures if f is not None], return_exceptions=True)

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


def test_a_chain_stops_at_its_first_storage_failure(store: Store):
    """Writes queued without waiting, one run's: after a lost one, the later ones are not made."""

    def second(db: Database) -> None:
        insert(db, 2)

    def full(fn: object) -> None:
        if fn is second:  # this write is lost: the disk is full
            raise sqlite3.OperationalError("database or disk is full")

    outcomes: list[tuple[int, str]] = []

    def done(k: int):  # noqa: ANN202
        return lambda _result, error: outcomes.append((k, type(error).__name__))

    async def queued() -> None:
        run, other = Chain(), Chain()
        store.before_write = full
        store.queue(insert, 1, on_done=done(1), wait=False, chain=run)
        store.queue(second, on_done=done(2), wait=False, chain=run)
        store.queue(insert, 3, on_done=done(3), wait=False, chain=run)
        store.queue(insert, 4, on_done=done(4), wait=False, chain=other)
        store.queue(insert, 5, on_done=done(5), wait=False)
        await store.flush()

    asyncio.run(queued())
    # 3 was not written after 2 was lost (no hole in the chain); other writes go on.
    assert rows(store.path) == [1, 4, 5]
    assert outcomes == [
        (1, "NoneType"),
        (2, "StorageUnavailable"),
        (3, "StorageUnavailable"),
        (4, "NoneType"),
        (5, "NoneType"),
    ]


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


def _stream(store: Store, run_id: str, tokens: int, end: bool, broker: Any = None) -> list[dict]:
    """Record a run whose model streams ``tokens`` pieces faster than the writer commits;
    ``end``: with its answer's message and the run's end. The events published, in order."""
    from agents.events import MessageAdded, RunFinished, RunStarted, TokenDelta, ToolCallDelta
    from app.runs.recorder import Recorder
    from app.store.live import Broker
    from app.store.runs import create_run

    store.write_sync(create_run, {"id": run_id, "model": "m", "provider": "p", "prompt": "hi"})
    broker = broker or Broker()
    published: list[dict] = []

    async def run() -> None:
        with broker.subscribe(run_id) as sub:
            await record(sub)

    async def record(sub: Any) -> None:
        recorder = Recorder(store, broker, run_id)
        await recorder.emit(RunStarted(model="m", provider="p", params={}))
        for i in range(tokens):
            # Not awaited one by one: the loop emits the next piece before the last committed.
            await recorder.emit(TokenDelta(text=f"t{i} ", run_output_tokens=i + 1))
            if i % 60 == 59:
                await asyncio.sleep(0.002)  # the last batch commits meanwhile: several batches
            if i == tokens // 2:  # a piece of another kind in the middle of a batch
                await recorder.emit(ToolCallDelta(round=0, index=0, name="echo", text='{"x"'))
        if end:
            text = "".join(f"t{i} " for i in range(tokens))
            await recorder.emit(MessageAdded(role="assistant", content=text))
            await recorder.emit(RunFinished(response="done"))
        await store.settle()
        while not sub.queue.empty():
            e = sub.queue.get_nowait()
            published.append({"seq": e.seq, "type": e.type, "payload": e.payload})

    asyncio.run(run())
    return published


def _log(store: Store, run_id: str) -> list[tuple[int, str]]:
    return store.read_sync(
        lambda db: [
            (r[0], r[1])
            for r in db.execute(
                "select seq, type from events where run_id = ? order by seq", [run_id]
            )
        ]
    )


def _reads_back(store: Store, run_id: str, published: list[dict]) -> None:
    """From every resume point, the log gives exactly the published events (as JSON)."""
    from app.store.event_log import events_after

    published = json.loads(json.dumps(published))  # tuples read back as lists
    for after in range(0, len(published) + 1, 7):
        got = store.read_sync(events_after, run_id, after, 1000)
        assert got == [e for e in published if e["seq"] > after]


def test_a_fast_model_s_pieces_are_a_few_rows_while_streaming(store: Store):
    """A batch of pieces is one compact row plus its last piece (the row ``last_seq`` names)."""
    from app.store.event_log import draft_text

    published = _stream(store, "fast", 300, end=False)
    rows = _log(store, "fast")
    assert len(published) == 302 and len(rows) < 60  # not one row per piece
    assert [k for _, k in rows].count("deltas") >= 1
    last = store.read_sync(lambda db: db.execute("select last_seq from runs").fetchone()[0])
    assert (last, "token") in rows  # the watchdog reads the time of that row
    _reads_back(store, "fast", published)
    text = "".join(e["payload"]["text"] for e in published if e["type"] == "token")
    assert store.read_sync(draft_text, "fast") == text


def test_pieces_streamed_as_compact_rows_fold_into_one_row(store: Store):
    published = _stream(store, "done", 300, end=True)
    kinds = [k for _, k in _log(store, "done")]
    # The tool-call piece is compactable too: the whole call is one row, its text by length.
    assert kinds == ["run_started", "deltas", "message", "run_finished"]
    _reads_back(store, "done", published)


def test_a_run_cut_off_mid_stream_folds_its_compact_rows_at_its_end(store: Store):
    from app.store.events import end_active_run

    published = _stream(store, "cut", 300, end=False)
    ended = store.write_sync(end_active_run, "cut", "run_interrupted", 1e9, "stopped")
    assert ended is not None
    seq, stored, _ = ended
    published.append({"seq": seq, "type": stored["type"], "payload": stored})
    assert [k for _, k in _log(store, "cut")] == ["run_started", "deltas", "run_interrupted"]
    _reads_back(store, "cut", published)


def test_the_wal_is_checkpointed_beside_the_writer_when_it_is_quiet(store: Store, monkeypatch):
    """A checkpoint syncs the file: it runs on a thread of its own, the writer goes on."""
    import threading

    from app.store import writer

    seen: list[str] = []
    checkpoint = writer._checkpoint

    def spy(db: Database) -> bool:
        seen.append(threading.current_thread().name)
        return checkpoint(db)

    monkeypatch.setattr(writer, "_checkpoint", spy)
    for k in range(writer.CHECKPOINT_EVERY + 5):
        store.write_sync(insert, k)  # one commit each
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[0] == "sqlite-checkpoint"
    store.write_sync(insert, 1000)  # and the store still writes
    assert rows(store.path)[-1] == 1000
