"""React to runs as they finish: cost alerts, and W&B run metrics when enabled.

One task follows every run's events through the live broker (the ``"*"``
subscription) and, on a terminal event, hands the run to the reactions.
Blocking work (webhooks, SMTP, wandb) runs on worker threads so the event
loop and the recorder never wait on the network. A subscriber that fell
behind catches up from SQLite: runs that ended since the last one seen.

With several replicas only *local* run ends count (``LiveEvent.local``): the
replica that recorded a run's end reacts to it, once, and a catch-up looks
only at the runs this replica owns (``owner``; and those with no owner).
``drained()`` returns once every run end published so far has been handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlite_utils import Database

from app.store import Store
from app.store.events import TERMINAL_EVENTS
from app.store.live import Broker, LiveEvent

log = logging.getLogger(__name__)

Reaction = Callable[[str], Awaitable[None]]


def _ended_since(db: Database, after: float, owner: str | None) -> list[tuple[str, float]]:
    rows = db.execute(
        "select id, ended_at from runs where ended_at > ?"
        " and (? is null or owner is null or owner = ?) order by ended_at",
        [after, owner, owner],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _local_end(event: LiveEvent) -> bool:
    """A run's end recorded here: another replica's runs are its own to react to."""
    return event.local and event.type in TERMINAL_EVENTS


class RunWatcher:
    def __init__(
        self, store: Store, broker: Broker, reactions: list[Reaction], owner: str | None = None
    ) -> None:
        self.store = store
        self.owner = owner
        self.broker = broker
        self.reactions = reactions
        self.task: asyncio.Task[None] | None = None
        self.pending: set[asyncio.Task[None]] = set()
        self.last_ended_at = 0.0
        # The subscription's queue, counting each run end until its reactions are
        # done (``task_done``), so ``drained`` can wait on ``join``.
        self._queue: asyncio.Queue[LiveEvent] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._follow(), name="run-watcher")

    async def drained(self) -> None:
        """Return once every run end published so far has been reacted to.

        Lets a caller (a test) tell "the watcher handled the run and did
        nothing" from "the watcher has not got to it yet".
        """
        if self._queue is not None:
            await self._queue.join()

    async def _react(self, run_id: str) -> None:
        for reaction in self.reactions:
            try:
                await reaction(run_id)
            except Exception:  # noqa: BLE001 - one failing reaction must not stop the others
                log.exception("reaction to run %s failed", run_id)

    async def _react_all(self, run_ids: list[str]) -> None:
        await asyncio.gather(*(self._react(run_id) for run_id in run_ids))

    def _spawn(
        self, queue: asyncio.Queue[LiveEvent], ended: list[tuple[str, float | None]]
    ) -> None:
        """React to the runs of one queued event (one run, or those a catch-up found)."""
        for _, ended_at in ended:
            if ended_at:
                self.last_ended_at = max(self.last_ended_at, ended_at)
        task = asyncio.create_task(self._react_all([run_id for run_id, _ in ended]))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        task.add_done_callback(lambda _: queue.task_done())

    async def _follow(self) -> None:
        with self.broker.subscribe("*", accept=_local_end) as sub:
            self._queue = sub.queue
            while True:
                event = await sub.queue.get()
                ended: list[tuple[str, float | None]]
                if sub.overflowed:
                    sub.overflowed = False
                    ended = list(
                        await self.store.read(_ended_since, self.last_ended_at, self.owner)
                    )
                else:
                    ended = [(event.run_id, (event.run or {}).get("ended_at"))]
                self._spawn(sub.queue, ended)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        # Reactions in flight finish (an alert being sent is sent), within reason.
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=10)
