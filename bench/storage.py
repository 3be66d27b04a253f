"""Benchmark: bytes on disk per native run, compact event log (issue 15) against the old layout.

Run from the repository root::

    .venv/bin/python bench/storage.py             # 20 runs of 500 tokens, a 50-step run
    .venv/bin/python bench/storage.py --runs 5    # quicker
    .venv/bin/python bench/storage.py --distinct  # bench/recording.py's " tok{i}" pieces

Part 1 records ``--runs`` native runs through the real recorder
(``agents.loop.run_agent`` with a scripted provider: one answer of
``--pieces`` token pieces, no network) into a fresh SQLite store, then
measures the database as ``VACUUM INTO`` writes it (pages in use only),
minus an empty store's size, per run. The old layout is the same runs
rewritten as the studio stored them before migration m0014 (one events row
per event with its whole payload; whole memory snapshots), measured the
same way: the events it had published are read back through
``events_after``, which the tests prove gives them exactly.

Part 2 records a ``--steps``-step run's memory snapshots (each step adds a
message of ~300 characters and moves a few scratch keys) and prints the
bytes stored for snapshots (event payloads + ``memory_snapshots`` rows),
old against new, in total and for the last step.

Nothing here leaves this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.events import MemorySnapshot, RunStarted  # noqa: E402
from agents.loop import RunRequest, run_agent  # noqa: E402
from agents.providers.base import Completion  # noqa: E402
from app.runs.recorder import Recorder  # noqa: E402
from app.store import Store  # noqa: E402
from app.store.live import Broker  # noqa: E402
from app.store.runs import create_run, events_after  # noqa: E402
from tests.old_layout import old_shape  # noqa: E402

MODEL = "scripted"
WORDS = (
    "the model reads the question and then it answers with a few plain sentences about"
    " what the tools returned so that a person can follow each step of the run and check"
    " every number it gives against the data"
).split()


class ScriptedProvider:
    """One plain answer of ``pieces`` word pieces (bench/recording.py's, without the tool round)."""

    name = "scripted"

    def __init__(self, pieces: int, distinct: bool = False) -> None:
        self.models = (MODEL,)
        self.pieces = pieces
        # Words of an ordinary answer (bench/recording.py's " tok{i}" are 500 distinct words,
        # which the runs' full-text index would store 500 times over).
        self._texts = [
            f" tok{i}" if distinct else f" {WORDS[i % len(WORDS)]}" for i in range(pieces)
        ]

    async def stream(self, messages: list[dict[str, Any]], tools: Any, params: Any):
        for text in self._texts:
            yield text
        yield Completion(
            text="".join(self._texts),
            model=params.model,
            input_tokens=sum(len(str(m.get("content") or "")) // 4 for m in messages),
            output_tokens=self.pieces,
            finish_reason="stop",
            tool_calls=(),
        )


def vacuumed_size(store: Store, target: Path) -> int:
    """Bytes of the database as VACUUM INTO writes it: pages in use, no free pages, no WAL."""
    target.unlink(missing_ok=True)

    def vacuum(db: Any) -> None:
        db.conn.execute("VACUUM INTO ?", [str(target)])

    store.read_sync(vacuum)
    return target.stat().st_size


async def record_runs(store: Store, runs: int, pieces: int, distinct: bool) -> list[str]:
    broker = Broker()
    ids = []
    for i in range(runs):
        run_id = f"bench-{i}"
        await store.write(create_run, {"id": run_id, "prompt": "Answer at length."})
        request = RunRequest(
            prompt="Answer at length.", model=MODEL, temperature=0.0, max_tokens=pieces + 10
        )
        await run_agent(
            request, ScriptedProvider(pieces, distinct), [], Recorder(store, broker, run_id)
        )
        ids.append(run_id)
    await store.settle()  # the folding of each call's pieces waits for a quiet writer
    return ids


def count(store: Store, sql: str) -> int:
    return store.read_sync(lambda db: db.execute(sql).fetchone()[0])


def part1(tmp: Path, runs: int, pieces: int, distinct: bool) -> dict[str, float]:
    empty = Store(tmp / "empty.db")
    base = vacuumed_size(empty, tmp / "empty.vacuum")
    empty.close()
    store = Store(tmp / "runs.db")
    ids = asyncio.run(record_runs(store, runs, pieces, distinct))
    events = count(store, "select count(*) from events") / runs
    new = (vacuumed_size(store, tmp / "new.vacuum") - base) / runs
    for run_id in ids:
        published = store.read_sync(events_after, run_id, 0, 100_000)
        store.write_sync(old_shape, run_id, published)
    old_events = count(store, "select count(*) from events") / runs
    old = (vacuumed_size(store, tmp / "old.vacuum") - base) / runs
    store.close()
    words = "distinct ' tok{i}' pieces" if distinct else "word pieces"
    print(f"per {pieces}-token native run ({words}, {runs} runs, empty store of {base:,} B off):")
    print(f"  old layout: {old:10,.0f} B   {old_events:6.0f} event rows")
    print(f"  new layout: {new:10,.0f} B   {events:6.0f} event rows")
    print(f"  ratio:      {old / new:10.1f}x smaller")
    return {"old": old, "new": new}


def snapshot_bytes(store: Store, run_id: str, seq: int | None = None) -> int:
    """Bytes of snapshot text stored for a run (or one step): event payloads + table rows."""
    where = "run_id = ?" + (" and seq = ?" if seq is not None else "")
    args = [run_id] + ([seq] if seq is not None else [])
    return store.read_sync(
        lambda db: (
            db.execute(
                f"select coalesce(sum(length(payload)), 0) from events where type = 'memory_snapshot'"
                f" and {where}",
                args,
            ).fetchone()[0]
            + db.execute(
                "select coalesce(sum(length(messages) + length(scratch)"
                " + coalesce(length(scratch_removed), 0) + coalesce(length(label), 0)), 0)"
                f" from memory_snapshots where {where}",
                args,
            ).fetchone()[0]
        )
    )


def part2(tmp: Path, steps: int) -> None:
    store = Store(tmp / "steps.db")
    run_id = "steps"
    store.write_sync(create_run, {"id": run_id, "prompt": "many steps"})

    async def feed() -> None:
        recorder = Recorder(store, Broker(), run_id)
        await recorder.emit(RunStarted(model=MODEL, provider="scripted", params={}))
        messages: list[dict[str, Any]] = [{"role": "user", "content": "go " * 100}]
        scratch: dict[str, Any] = {"round": 0, "pending_tool_calls": [], "tool_calls": 0}
        for step in range(steps):
            if step:
                messages.append({"role": "tool" if step % 2 else "assistant", "content": "x" * 300})
                scratch = {**scratch, "round": step, "tool_calls": step // 2}
            await recorder.emit(
                MemorySnapshot(
                    step=step, label=f"step {step}", messages=tuple(messages), scratch=scratch
                )
            )

    asyncio.run(feed())
    last_seq = count(store, "select max(seq) from memory_snapshots")
    new_total, new_last = snapshot_bytes(store, run_id), snapshot_bytes(store, run_id, last_seq)
    published = store.read_sync(events_after, run_id, 0, 100_000)
    store.write_sync(old_shape, run_id, published)
    old_total, old_last = snapshot_bytes(store, run_id), snapshot_bytes(store, run_id, last_seq)
    store.close()
    print(f"memory snapshots of a {steps}-step run (bytes of stored text):")
    print(f"  old layout: {old_total:10,} B in all, {old_last:8,} B for step {steps - 1}")
    print(f"  new layout: {new_total:10,} B in all, {new_last:8,} B for step {steps - 1}")
    print(f"  ratio:      {old_total / new_total:10.1f}x smaller in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pieces", type=int, default=500)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--distinct", action="store_true", help="recording.py's pieces: 500 distinct words"
    )
    args = parser.parse_args()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average: {' '.join(load)}  ({os.cpu_count()} cores)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        part1(Path(tmp), args.runs, args.pieces, args.distinct)
        part2(Path(tmp), args.steps)
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
