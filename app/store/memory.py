"""Give the memory that big reads freed back to the OS (glibc's malloc only).

A full-text search for a word found in nearly every run makes SQLite build the
word's whole doclist in memory (several MB at a million runs, grown by
``realloc``) on a reader thread, and frees it when the query ends. glibc
serves a block that big with its own ``mmap`` and unmaps it on ``free`` -
until the first such ``free``: then it raises its mmap threshold to that
block's size (up to 32 MB), and from there on every big buffer is carved
from the arena of the thread that asked (one arena per busy thread), whose
freed memory stays resident. The server's RSS grew 65 MB with the first
searches and stayed there.

Two remedies, both no-ops on anything but Linux with glibc (macOS, musl):

- :func:`bound_malloc_retention` pins the mmap threshold at 1 MiB
  (``mallopt(M_MMAP_THRESHOLD)``, which also turns that raising off): big
  buffers keep their own mapping and leave with it. This is the fix.
- :class:`IdleTrim` calls ``malloc_trim(0)`` once the read pool has had no
  read in flight for a second, on a pool thread (never the event loop): it
  hands back the free pages that smaller, scattered blocks leave inside the
  arenas. It took 1-25 ms here (more with more freed memory to walk) and
  takes each arena's lock while it works, which is why it waits for a quiet
  moment instead of following reads.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import sys
from collections.abc import Callable
from concurrent.futures import Executor

log = logging.getLogger(__name__)

IDLE_DELAY_S = 1.0  # a quiet second after the last read: the page (or burst) is over
M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 1 << 20  # blocks from 1 MiB up get their own mapping, given back on free


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (which has malloc_trim and mallopt)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        # Both exist in glibc only: musl has neither, nor gnu_get_libc_version.
        libc.gnu_get_libc_version  # noqa: B018 - an attribute lookup that raises if absent
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_GLIBC = _glibc()
_TRIM: Callable[[], object] | None = functools.partial(_GLIBC.malloc_trim, 0) if _GLIBC else None
_MALLOPT: Callable[[int, int], int] | None = _GLIBC.mallopt if _GLIBC else None


def bound_malloc_retention() -> bool:
    """Pin glibc's mmap threshold (see the module docstring); True if it was set.

    Process-wide and idempotent; blocks allocated before keep where they are.
    """
    if _MALLOPT is None:
        return False
    ok = bool(_MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not ok:
        log.warning("mallopt(M_MMAP_THRESHOLD) refused: freed big reads may stay resident")
    return ok


def trim_supported() -> bool:
    """Whether :func:`release_free_memory` can do anything here (Linux with glibc)."""
    return _TRIM is not None


def release_free_memory() -> bool:
    """Return malloc's free memory to the OS; True if glibc gave any back."""
    return bool(_TRIM()) if _TRIM is not None else False


class IdleTrim:
    """Counts the reads in flight on one event loop; trims once they stop for a while.

    ``started()`` and ``finished()`` are called on the event loop around each
    read (so no lock is needed). When the last read in flight ends, a trim is
    scheduled ``delay`` seconds later; a read starting meanwhile postpones it
    to the next quiet moment. The trim itself runs on ``executor``.
    """

    def __init__(
        self,
        executor: Executor,
        delay: float | None = None,
        release: Callable[[], object] = release_free_memory,
    ) -> None:
        self._executor = executor
        self._delay = IDLE_DELAY_S if delay is None else delay
        self._release = release
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self.trims = 0  # how many trims ran (tests, benchmarks)

    @property
    def enabled(self) -> bool:
        return self._release is not release_free_memory or trim_supported()

    def started(self) -> None:
        self._in_flight += 1
        if self._timer is not None:  # not quiet after all: wait for the next quiet moment
            self._timer.cancel()
            self._timer = None

    def finished(self, loop: asyncio.AbstractEventLoop) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self.enabled:
            self._timer = loop.call_later(self._delay, self._quiet, loop)

    def _quiet(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._in_flight:  # defensive: started() cancels the timer
            return
        try:
            loop.run_in_executor(self._executor, self._trim)
        except RuntimeError:  # the pool was shut down: the store is closing
            pass

    def _trim(self) -> None:
        self._release()
        self.trims += 1

    def cancel(self) -> None:
        """Drop a pending trim (the store is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
