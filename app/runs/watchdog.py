"""The run watchdog: ends runs that stopped making progress, and probes a degraded store.

A run makes progress when it records an event (a token, a tool call, a
message). A provider that hangs without a word, a tool that never returns or
a wedged worker would otherwise leave a run ``running`` for ever: after
``AGENTOP_RUN_STALL_TIMEOUT_S`` without an event the watchdog records the run
``failed`` ("no progress for N s"), tells live followers, and cancels its task.
A parent waiting on an ``ask_agent`` helper run progresses while the helper does.

While the store is degraded (it could not write), each pass also tries one
small write, so the studio notices by itself when space returns.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlite_utils import Database

from app.core.background import Periodic
from app.runs.runner import Runner
from app.store import Store
from app.store.db import StorageUnavailable
from app.store.failures import fail_active_run
from app.store.live import Broker, LiveEvent
from app.store.statuses import RUNNING

log = logging.getLogger(__name__)

# How often the watchdog looks, at most: a stall is noticed within this much of its limit.
MAX_INTERVAL_S = 2.0
# How far up a chain of helper runs progress is passed (ask_agent depth is small).
MAX_DEPTH = 16


def running_progress(db: Database) -> list[dict[str, Any]]:
    """Runs in progress, each with its parent and the time of its last event (``last_at``)."""
    return [
        dict(row)
        for row in db.query(
            "select r.id, r.parent_run_id, r.parent_kind,"
            " coalesce(e.at, r.started_at) as last_at"
            " from runs r left join events e on e.run_id = r.id and e.seq = r.last_seq"
            " where r.status = ?",
            [RUNNING],
        )
    ]


def last_progress(rows: list[dict[str, Any]]) -> dict[str, float]:
    """When each run last progressed, counting the progress of the helper runs it waits on."""
    progress = {r["id"]: r["last_at"] for r in rows}
    parents = {r["id"]: r["parent_run_id"] for r in rows if r["parent_kind"] == "agent"}
    for row in rows:
        child, at = row["id"], row["last_at"]
        for _ in range(MAX_DEPTH):
            parent = parents.get(child)
            if parent not in progress:
                break
            progress[parent] = max(progress[parent], at)
            child = parent
    return progress


class RunWatchdog:
    def __init__(
        self, store: Store, broker: Broker, runner: Runner, stall_timeout_s: float
    ) -> None:
        self.store = store
        self.broker = broker
        self.runner = runner
        self.stall_timeout_s = stall_timeout_s
        checks = stall_timeout_s / 4 if stall_timeout_s > 0 else MAX_INTERVAL_S
        self.interval_s = min(max(checks, 0.05), MAX_INTERVAL_S)
        # A full disk is reported by the store itself (health, logs): look again next time.
        self._passes = Periodic(
            "run watchdog pass", self.interval_s, self.check, quiet=(StorageUnavailable,)
        )

    def start(self) -> None:
        self._passes.start()

    async def stop(self) -> None:
        await self._passes.stop()

    async def check(self) -> list[str]:
        """One pass: probe a degraded store, end stalled runs; return the ids ended."""
        if not self.store.health.ok:
            await self.store.probe()
        if self.stall_timeout_s <= 0:
            return []
        cutoff = time.time() - self.stall_timeout_s
        progress = last_progress(await self.store.read(running_progress))
        # Only runs this process executes: another process's runs are its own business.
        stalled = [r for r, at in progress.items() if at < cutoff and r in self.runner.tasks]
        for run_id in stalled:
            await self._end(run_id)
        return stalled

    async def _end(self, run_id: str) -> None:
        error = f"no progress for {self.stall_timeout_s:g} s: the run was stopped"
        log.warning("run %s: %s", run_id, error)
        # Recorded first, so the run ends failed even if its task ignores the cancellation.
        ended = await self.store.write(fail_active_run, run_id, time.time(), error)
        if ended is not None:
            seq, stored, run = ended
            self.broker.publish(LiveEvent(run_id, seq, "run_failed", stored, run))
        # The task then finds its run ended and records no end of its own.
        await self.runner.cancel(run_id, error)
