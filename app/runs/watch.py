"""React to runs as they finish: cost alerts, and W&B run metrics when enabled.

One task follows every run's events through the live broker (the ``"*"``
subscription) and, on a terminal event, hands the run to the reactions.
Blocking work (webhooks, SMTP, wandb) runs on worker threads so the event
loop and the recorder never wait on the network. A subscriber that fell
behind catches up from SQLite: runs that ended since the last one seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlite_utils import Database

from app.store import Store
from app.store.events import TERMINAL_EVENTS
from app.store.live import Broker

log = logging.getLogger(__name__)

Reaction = Callable[[str], Awaitable[None]]


def _ended_since(db: Database, after: float) -> list[tuple[str, float]]:
    rows = db.execute(
        "select id, ended_at from runs where ended_at > ? order by ended_at", [after]
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


class RunWatcher:
    def __init__(self, store: Store, broker: Broker, reactions: list[Reaction]) -> None:
        self.store = store
        self.broker = broker
        self.reactions = reactions
        self.task: asyncio.Task[None] | None = None
        self.pending: set[asyncio.Task[None]] = set()
        self.last_ended_at = 0.0

    def start(self) -> None:
        self.task = asyncio.create_task(self._follow(), name="run-watcher")

    async def _react(self, run_id: str) -> None:
        for reaction in self.reactions:
            try:
                await reaction(run_id)
            except Exception:  # noqa: BLE001 - one failing reaction must not stop the others
                log.exception("reaction to run %s failed", run_id)

    def _spawn(self, run_id: str, ended_at: float | None) -> None:
        if ended_at:
            self.last_ended_at = max(self.last_ended_at, ended_at)
        task = asyncio.create_task(self._react(run_id))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _follow(self) -> None:
        with self.broker.subscribe("*", accept=lambda e: e.type in TERMINAL_EVENTS) as sub:
            while True:
                event = await sub.queue.get()
                if sub.overflowed:
                    sub.overflowed = False
                    for run_id, ended in await self.store.read(_ended_since, self.last_ended_at):
                        self._spawn(run_id, ended)
                    continue
                self._spawn(event.run_id, (event.run or {}).get("ended_at"))

    async def idle(self) -> None:
        """Wait for reactions in flight (tests, shutdown)."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.idle(), 10)
