"""In-process broker that fans a run's events out to live subscribers.

The recorder publishes only after an event is committed, so a subscriber
that first reads stored events and then drains its queue (skipping sequence
numbers it already has) sees every event exactly once. A subscriber that
falls too far behind is marked ``overflowed`` and catches up from SQLite.

With several replicas on PostgreSQL a relay (``app.store.postgres.relay``)
sends every local publish to the other replicas (``Broker.relay``) and
publishes theirs here with their ``origin``: pages and SSE see every run,
while what acts on events (alerts, W&B metrics) follows only ``local`` ones,
so it acts once per run. When the relay may have missed events it calls
``Broker.resync``: subscribers are marked ``overflowed`` and woken by a
``resync`` nudge, and catch up from the store as after an overflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app.store.db import Store
from app.store.events import TERMINAL_EVENTS as TERMINAL_TYPES
from app.store.events import TOTALS_EVENTS
from app.store.runs import events_after, get_run
from app.store.statuses import TERMINAL

# Sequence number of the ``run_created`` notice: not part of the stored log
# (followers skip it as already seen), only for lists of runs.
RUN_CREATED_SEQ = 0
# Type of the nudge ``Broker.resync`` wakes subscribers with (never stored, never relayed).
RESYNC = "resync"


@dataclass(frozen=True)
class LiveEvent:
    run_id: str
    seq: int
    type: str
    payload: dict[str, Any]
    run: dict[str, Any] | None = None  # the run row after this event, when totals changed
    origin: str | None = None  # the replica that published it; None: this one

    @property
    def local(self) -> bool:
        """Published by this replica (it recorded the run): the one to act on it."""
        return self.origin is None


@dataclass(eq=False)  # identity equality: subscriptions live in sets
class Subscription:
    run_id: str
    queue: asyncio.Queue[LiveEvent] = field(default_factory=lambda: asyncio.Queue(maxsize=5000))
    overflowed: bool = False
    # Checked at publish time, so a follower of "*" that wants a few kinds of
    # event is not woken (or overflowed) by every token of every run.
    accept: Callable[[LiveEvent], bool] | None = None

    async def next(self, timeout: float) -> LiveEvent | None:
        """The next event, or None after ``timeout`` seconds of silence (time for a keep-alive)."""
        # A commit publishes a burst at once: take what is queued without arming a timer each.
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class Broker:
    """Subscribers per run id (``"*"`` subscribes to every run)."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        # Ends of runs that storage failure kept from being written, for late followers.
        self._unstored_ends: dict[str, LiveEvent] = {}
        # Hands every local event to the other replicas (set by the PostgreSQL relay).
        self.relay: Callable[[LiveEvent], None] | None = None

    @contextmanager
    def subscribe(
        self, run_id: str, accept: Callable[[LiveEvent], bool] | None = None
    ) -> Iterator[Subscription]:
        sub = Subscription(run_id, accept=accept)
        self._subs.setdefault(run_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(run_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[run_id]

    def publish(self, event: LiveEvent) -> None:
        for key in (event.run_id, "*"):
            for sub in self._subs.get(key, ()):
                self._offer(sub, event)
        if self.relay is not None and event.local:
            self.relay(event)

    def resync(self, key: str | None = None) -> None:
        """Tell the subscribers of ``key`` (None: all) to catch up from the store.

        For when events may have been missed (the relay was disconnected): each
        is marked ``overflowed`` and woken by a ``resync`` nudge. A subscriber
        whose ``accept`` refuses the nudge is left alone: it follows only local
        events (which the relay cannot lose) or takes what comes.
        """
        for name in list(self._subs) if key is None else [key]:
            for sub in self._subs.get(name, ()):
                nudge = LiveEvent(sub.run_id if key is None else key, -1, RESYNC, {})
                if self._offer(sub, nudge):
                    sub.overflowed = True

    @staticmethod
    def _offer(sub: Subscription, event: LiveEvent) -> bool:
        """Queue ``event`` for ``sub`` if it accepts it; False if it does not."""
        if sub.accept is not None and not sub.accept(event):
            return False
        try:
            sub.queue.put_nowait(event)
        except asyncio.QueueFull:
            sub.overflowed = True
        return True

    def publish_unstored_end(self, event: LiveEvent) -> None:
        """Publish a run's end that could not be stored, and keep it for followers to come."""
        self._unstored_ends[event.run_id] = event
        self.publish(event)

    def unstored_end(self, run_id: str) -> LiveEvent | None:
        return self._unstored_ends.get(run_id)

    def subscriber_count(self, run_id: str) -> int:
        return len(self._subs.get(run_id, ()))


CATCH_UP_BATCH = 1000


async def follow_run(
    store: Store, broker: Broker, run_id: str, after_seq: int = 0, keepalive_s: float = 15.0
) -> AsyncIterator[LiveEvent | None]:
    """Every event of a run after ``after_seq``, exactly once, stored ones first, then live.

    Subscribes before reading SQLite, so an event committed meanwhile is either
    in the stored batch or in the queue (duplicates are skipped by sequence
    number). Yields None every ``keepalive_s`` of silence so the caller can
    send a keep-alive; stops after the run's terminal event.
    """

    with broker.subscribe(run_id) as sub:
        last = after_seq
        ended = False

        async def catch_up() -> AsyncIterator[LiveEvent]:
            nonlocal last, ended
            run = await store.read(get_run, run_id)
            # Read before the events: if the run had ended, its whole log is stored.
            ended = run is None or run["status"] in TERMINAL
            while True:
                rows = await store.read(events_after, run_id, last, CATCH_UP_BATCH)
                for row in rows:
                    last = row["seq"]
                    # Stored events carry today's totals: the run row as it is now.
                    row_run = run if row["type"] in TOTALS_EVENTS else None
                    yield LiveEvent(run_id, row["seq"], row["type"], row["payload"], row_run)
                if len(rows) < CATCH_UP_BATCH:
                    return

        async for stored in catch_up():
            yield stored
            if stored.type in TERMINAL_TYPES:
                return
        if ended:
            return  # resumed at or past the terminal event: nothing more will come
        unstored = broker.unstored_end(run_id)
        if unstored is not None and unstored.seq > last:
            yield unstored  # storage failed and the end is not written yet: it is over all the same
            return
        while True:
            event = await sub.next(keepalive_s)
            if event is None:
                yield None
                continue
            if sub.overflowed or event.seq > last + 1:
                # Fell behind or missed something: SQLite has it all, except an end
                # that storage failure kept from being written.
                sub.overflowed = False
                end = event if event.type in TERMINAL_TYPES else None
                while not sub.queue.empty():
                    queued = sub.queue.get_nowait()
                    end = queued if queued.type in TERMINAL_TYPES else end
                async for stored in catch_up():
                    yield stored
                    if stored.type in TERMINAL_TYPES:
                        return
                if end is not None and end.seq > last:
                    yield end
                    return
                continue
            if event.seq <= last:
                continue
            last = event.seq
            yield event
            if event.type in TERMINAL_TYPES:
                return
