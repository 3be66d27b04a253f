"""Retention in the background: with ``AGENTOP_RETENTION_DAYS`` set, old runs go by themselves.

A pass runs at start-up and then every ``every_s`` seconds. It deletes in
small writes (``app.store.retention``, ``BATCH`` runs each) so a live run's
events never wait long behind it, then gives the freed pages back to the
file system a few megabytes at a time, between other writes.

An existing database file whose ``auto_vacuum`` is off is converted once, at
the first pass: one VACUUM (logged, with the file's size), during which
writes wait. A file created by this version is incremental from its first
page (``app.store.db.connect``) and never needs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from app.core.background import Periodic
from app.store import Store
from app.store.db import StorageUnavailable
from app.store.retention import (
    BATCH,
    RECLAIM_PAGES,
    TELEMETRY_BATCH,
    Deleted,
    checkpoint,
    delete_expired,
    delete_old_telemetry,
    enable_incremental_vacuum,
    reclaim,
    space,
)

log = logging.getLogger(__name__)

EVERY_S = 300.0
DAY_S = 86_400.0


@dataclass(frozen=True)
class RetentionPass:
    """What one pass did: when, its cutoff, what it deleted, the pages it gave back."""

    at: float
    cutoff: float
    deleted: Deleted
    pages_reclaimed: int


class Retention:
    """Deletes runs older than ``days`` (see the module docstring)."""

    def __init__(
        self, store: Store, days: float, every_s: float = EVERY_S, batch: int = BATCH
    ) -> None:
        self.store = store
        self.days = days
        self.batch = batch
        self.last: RetentionPass | None = None
        self._first: asyncio.Task[None] | None = None
        self._passes = Periodic(
            "retention pass", every_s, self.run_pass, quiet=(StorageUnavailable,)
        )

    def start(self) -> None:
        # The first pass (and a possible VACUUM) must not hold up the server's start.
        self._first = asyncio.create_task(self._start_up(), name="retention start-up")
        self._passes.start()

    async def stop(self) -> None:
        await self._passes.stop()
        if self._first is not None and not self._first.done():
            self._first.cancel()
            await asyncio.gather(self._first, return_exceptions=True)

    async def _start_up(self) -> None:
        try:
            await self.make_reclaimable()
            await self.run_pass()
        except StorageUnavailable:
            pass  # reported by the store; the next pass tries again
        except Exception:  # noqa: BLE001 - the periodic passes go on all the same
            log.exception("retention start-up pass failed")

    async def make_reclaimable(self) -> bool:
        """Turn on incremental vacuum in a file made before it (one VACUUM, logged)."""
        if self.store.url is not None:
            return False  # PostgreSQL: autovacuum makes deleted rows' space reusable
        before = await self.store.maintain(space)
        if before.auto_vacuum != 0:
            return False
        size_mb = before.page_count * before.page_size / 1e6
        log.warning(
            "retention: converting %s (%.1f MB) to incremental auto-vacuum with one VACUUM;"
            " writes wait until it ends",
            self.store.path,
            size_mb,
        )
        started = time.perf_counter()
        done = await self.store.maintain(enable_incremental_vacuum)
        log.warning("retention: VACUUM done in %.1f s", time.perf_counter() - started)
        return done

    async def run_pass(self) -> RetentionPass:
        """Delete every expired run (in batches), old unattached telemetry, then reclaim."""
        now = time.time()
        cutoff = now - self.days * DAY_S
        deleted = Deleted()
        while True:
            step = await self.store.write(delete_expired, cutoff, self.batch)
            deleted += step
            if step.runs < self.batch:
                break
        while True:
            step = await self.store.write(delete_old_telemetry, cutoff, TELEMETRY_BATCH)
            deleted += step
            if step.rows < TELEMETRY_BATCH:
                break
        reclaimed = await self.reclaim() if deleted.runs or deleted.rows else 0
        self.last = RetentionPass(now, cutoff, deleted, reclaimed)
        if deleted.runs or deleted.rows:
            log.info(
                "retention: deleted %d run(s) and %d other row(s) from before %s;"
                " %d page(s) given back",
                deleted.runs,
                deleted.rows,
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(cutoff)),
                reclaimed,
            )
        return self.last

    async def reclaim(self) -> int:
        """Give the free pages back in steps, so writes run between them; return how many."""
        if self.store.url is not None:
            return 0  # PostgreSQL: autovacuum's work, not ours
        before = await self.store.maintain(space)
        if before.auto_vacuum != 2:  # full (1) reclaims by itself; none (0) cannot
            return 0
        free = before.freelist_count
        while free > 0:
            left = await self.store.maintain(reclaim, RECLAIM_PAGES)
            if left >= free:  # nothing more will go (should not happen): do not spin
                break
            free = left
        await self.store.maintain(checkpoint)
        return before.freelist_count - free
