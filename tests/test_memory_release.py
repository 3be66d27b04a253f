"""Freed memory goes back to the OS once the readers are quiet (app.store.memory).

The trim really shrinks RSS after a fragmenting burst of allocations on a
thread (glibc only); :class:`IdleTrim` trims once per quiet moment, never
while a read is in flight; the store's reads drive it.
"""

from __future__ import annotations

import asyncio
import ctypes
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.store import Store, memory
from app.store.memory import IdleTrim, release_free_memory, trim_supported
from tests.receivers import wait_until

glibc_only = pytest.mark.skipif(not trim_supported(), reason="malloc_trim is glibc's")


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def fragment_on_a_thread(blocks: int = 2000, size: int = 64 * 1024) -> list[int]:
    """Leave ~blocks * size / 2 bytes freed but kept by malloc, as a big SQLite read does.

    Blocks below the mmap threshold come from the thread's arena; every other one
    stays allocated, so the freed half sits between live blocks, where malloc's
    own trimming of the arena's top never reaches it. Returns the kept blocks.
    """
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    kept: list[int] = []

    def work() -> None:
        pointers = [libc.malloc(size) for _ in range(blocks)]
        for p in pointers:
            libc.memset(p, 1, size)  # touched: resident, not just reserved
        for i, p in enumerate(pointers):
            if i % 2:
                kept.append(p)
            else:
                libc.free(p)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return kept


@glibc_only
def test_release_returns_freed_arena_memory_to_the_os() -> None:
    kept = fragment_on_a_thread()
    try:
        before = rss_anon_mb()
        release_free_memory()
        after = rss_anon_mb()
        # ~62 MB were freed; at least half of it must leave the process.
        assert before - after > 30, (before, after)
    finally:
        free = ctypes.CDLL(None).free
        free.argtypes = [ctypes.c_void_p]
        for p in kept:
            free(p)


# Run in a fresh interpreter: the threshold is process-wide, and other tests' stores pin it.
BIG_BLOCKS = """
import ctypes, sys, threading
from pathlib import Path
from app.store import memory
if sys.argv[1] == "pinned":
    assert memory.bound_malloc_retention()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.realloc.restype = ctypes.c_void_p
libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def anon():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

def search():  # as FTS5 does for a common word: a big buffer, grown, filled, freed
    size = 1 << 16
    p = libc.malloc(size)
    while size < 16 << 20:
        size *= 2
        p = libc.realloc(p, size)
    libc.memset(p, 1, size)
    libc.free(p)

before = anon()
for _ in range(3):
    t = threading.Thread(target=search)
    t.start()
    t.join()
print(anon() - before)
"""


@glibc_only
def test_pinned_threshold_gives_big_freed_blocks_back() -> None:
    def kept_mb(mode: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", BIG_BLOCKS, mode],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return float(out.stdout)

    # glibc's default keeps the 16 MB buffer once its first free raised the threshold ...
    assert kept_mb("default") > 12
    # ... and with the threshold pinned, it leaves with its mapping.
    assert kept_mb("pinned") < 4


def test_without_glibc_release_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_TRIM", None)
    monkeypatch.setattr(memory, "_MALLOPT", None)
    assert not trim_supported()
    assert memory.bound_malloc_retention() is False
    assert release_free_memory() is False
    assert not IdleTrim(ThreadPoolExecutor(1)).enabled


def test_idle_trim_waits_for_quiet_then_trims_once() -> None:
    trimmed = threading.Event()
    in_flight_at_trim: list[int] = []

    def release() -> None:
        in_flight_at_trim.append(trim._in_flight)
        trimmed.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        trim.started()
        trim.started()
        trim.finished(loop)  # one read still in flight: nothing scheduled
        await asyncio.sleep(0.15)
        assert not trimmed.is_set()
        trim.finished(loop)  # quiet from here ...
        await asyncio.sleep(0.05)
        trim.started()  # ... but a read starts before the delay is over
        await asyncio.sleep(0.15)
        assert not trimmed.is_set()
        trim.finished(loop)
        await asyncio.wait_for(asyncio.to_thread(trimmed.wait), 5)
        await asyncio.sleep(0.3)  # long enough for a second trim, were one scheduled

    with ThreadPoolExecutor(1) as pool:
        trim = IdleTrim(pool, delay=0.1, release=release)
        asyncio.run(main())
    assert in_flight_at_trim == [0]
    assert trim.trims == 1


def test_store_reads_trim_when_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "IDLE_DELAY_S", 0.05)
    store = Store(tmp_path / "t.db")
    released = threading.Event()
    monkeypatch.setattr(store._idle_trim, "_release", released.set)

    async def main() -> bool:
        await asyncio.gather(*(store.read(lambda db: db.execute("select 1")) for _ in range(5)))
        # The trim is a timer of this loop: keep it running until the trim came.
        return await asyncio.to_thread(released.wait, 5)

    try:
        assert asyncio.run(main()), "no trim after the reads"
        wait_until(lambda: store._idle_trim.trims == 1, what="the trim to be counted")
    finally:
        store.close()
