"""Live events across replicas: the broker's local publishes, relayed over LISTEN/NOTIFY.

Each replica publishes its own events to its in-process broker first
(``app.store.live``), then hands them to :class:`PgRelay`, which NOTIFYs them
on one channel from a sender thread (so the event loop never waits on the
network). A listener thread on every replica, on a connection of its own,
turns the notifications of *other* replicas into local publishes on the event
loop, marked with their origin (``LiveEvent.origin``), so pages and SSE see
every run while side effects (alerts, W&B metrics) stay with the replica that
recorded the run.

Wire format, one compact JSON object per notification: ``{"o": origin,
"e": [item, ...], "s": 1?}``. An item is ``[key, seq, type, payload, run]``,
or ``[key, seq, type]`` when it alone would pass NOTIFY's 8000-byte limit: a
*reference*, fetched from the store by the receiver (the event is committed
before it is published). ``"s"`` asks receivers to resync: the sender lost
events (the database was unreachable, its queue overflowed).

After the listener reconnects, notifications sent meanwhile are gone: every
local subscriber is told to resync (``Broker.resync``), so a follower of a run
catches up from the store instead of waiting forever for an end it missed.
Litestar's ``PsycoPgChannelsBackend`` does the LISTEN/NOTIFY part, but not the
origin, the size limit or the resync on reconnect that exactly-once needs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from app.store.events import TOTALS_EVENTS
from app.store.live import RUN_CREATED_SEQ, Broker, LiveEvent
from app.store.runs import events_after, get_run

log = logging.getLogger("agentop.relay")

CHANNEL = "agentop_live"
# NOTIFY refuses payloads of 8000 bytes or more; the envelope and slack fit in the rest.
PAYLOAD_LIMIT = 7600
# Local events waiting to be sent; past it they are dropped and receivers told to resync.
OUTBOX_MAX = 50_000
# Events sent in one transaction (one round trip, several notifications).
SEND_BATCH = 500
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 10.0
_STOP = object()

Fetch = Callable[[str, int, str], LiveEvent | None]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _size(text: str) -> int:
    return len(text.encode())


def encode(events: Iterable[LiveEvent], origin: str, resync: bool = False) -> list[str]:
    """The notifications that carry ``events`` from ``origin``, each under the limit.

    Events keep their order; one too big alone travels as a reference.
    """
    head = _dumps({"o": origin, "s": 1} if resync else {"o": origin})[:-1] + ',"e":['
    room = PAYLOAD_LIMIT - _size(head) - 2  # the closing "]}"
    payloads: list[str] = []
    items: list[str] = []
    used = 0
    for event in events:
        item = _dumps([event.run_id, event.seq, event.type, event.payload, event.run])
        if _size(item) > room:
            item = _dumps([event.run_id, event.seq, event.type])
        size = _size(item) + 1  # the comma
        if items and used + size > room:
            payloads.append(head + ",".join(items) + "]}")
            items, used = [], 0
        items.append(item)
        used += size
    if items or resync:
        payloads.append(head + ",".join(items) + "]}")
    return payloads


def decode(text: str) -> tuple[str, bool, list[list[Any]]]:
    """(origin, resync asked, items) of one notification."""
    message = json.loads(text)
    return str(message["o"]), bool(message.get("s")), list(message.get("e") or [])


def store_fetch(store: Any) -> Fetch:
    """Read a referenced event (and the run row after it) back from the store."""

    def fetch(key: str, seq: int, kind: str) -> LiveEvent | None:
        run = None
        if kind in TOTALS_EVENTS or seq == RUN_CREATED_SEQ:
            run = store.read_sync(get_run, key)
        if seq == RUN_CREATED_SEQ:
            return None if run is None else LiveEvent(key, seq, kind, {}, run)
        rows = store.read_sync(events_after, key, seq - 1, 1)
        if not rows or rows[0]["seq"] != seq:
            return None  # not a run's event (a job's update), or gone: a resync covers it
        return LiveEvent(key, seq, rows[0]["type"], rows[0]["payload"], run)

    return fetch


class PgRelay:
    """NOTIFY this replica's events; publish the other replicas' events locally."""

    def __init__(
        self,
        url: str,
        origin: str,
        broker: Broker,
        fetch: Fetch,
        channel: str = CHANNEL,
    ) -> None:
        self.url = url
        self.origin = origin
        self.broker = broker
        self.fetch = fetch
        self.channel = channel
        self.listening = threading.Event()  # set while LISTEN is in place (tests wait on it)
        self._outbox: queue.Queue[Any] = queue.Queue(OUTBOX_MAX)
        self._lost = False  # events dropped since the last send: receivers must resync
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._listen_conn: psycopg.Connection[Any] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for name, target in (("sender", self._send_loop), ("listener", self._listen_loop)):
            thread = threading.Thread(target=target, name=f"relay-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def send(self, event: LiveEvent) -> None:
        """Queue a local event for the other replicas (any thread; never blocks)."""
        try:
            self._outbox.put_nowait(event)
        except queue.Full:
            self._lost = True

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop both threads."""
        self._stopping.set()
        try:
            self._outbox.put_nowait(_STOP)
        except queue.Full:
            pass
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _connect(self, role: str) -> psycopg.Connection[Any]:
        # Named, so pg_stat_activity tells the relay's connections apart (and tests drop one).
        name = f"agentop relay {self.origin} {role}"[:63]
        return psycopg.Connection.connect(self.url, autocommit=True, application_name=name)

    # --- sending ------------------------------------------------------------

    def _take(self) -> tuple[list[LiveEvent], bool]:
        """The next batch of queued events (blocks for the first); True at the stop."""
        first = self._outbox.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < SEND_BATCH:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _send_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        stop = False
        while not stop:
            batch, stop = self._take()
            if not batch:
                continue
            lost, self._lost = self._lost, False
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._connect("sender")
                with conn.transaction():  # delivered together, in order, at the commit
                    for payload in encode(batch, self.origin, resync=lost):
                        conn.execute("select pg_notify(%s, %s)", (self.channel, payload))
            except Exception as exc:  # noqa: BLE001 - the sender must outlive any one batch
                # Followers elsewhere catch up from the store once told to resync.
                log.warning("could not relay %d live event(s): %s", len(batch), exc)
                self._lost = True
                if conn is not None:
                    conn.close()
                conn = None
                self._stopping.wait(RECONNECT_MIN_S)
        if conn is not None:
            conn.close()

    # --- receiving ----------------------------------------------------------

    def _listen_loop(self) -> None:
        delay = RECONNECT_MIN_S
        first = True
        while not self._stopping.is_set():
            try:
                with self._connect("listener") as conn:
                    self._listen_conn = conn
                    conn.execute(f"LISTEN {self.channel}")
                    self.listening.set()
                    if not first:
                        # Whatever was sent while we were away is only in the store.
                        log.info("live relay reconnected; followers resync from the store")
                        self._publish([], resync=True)
                    first, delay = False, RECONNECT_MIN_S
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._receive(note.payload)
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                log.warning("live relay lost its connection (%s); retrying in %.1f s", exc, delay)
            finally:
                self.listening.clear()
                self._listen_conn = None
            self._stopping.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _receive(self, text: str) -> None:
        try:
            origin, resync, items = decode(text)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed live notification (%d bytes)", len(text))
            return
        if origin == self.origin:
            return  # our own, published locally already
        events: list[LiveEvent] = []
        stale: list[str] = []
        for item in items:
            key, seq, kind = str(item[0]), int(item[1]), str(item[2])
            if len(item) >= 5:
                events.append(LiveEvent(key, seq, kind, item[3] or {}, item[4], origin))
                continue
            try:
                fetched = self.fetch(key, seq, kind)
            except Exception:  # noqa: BLE001 - a failed read is a missed event: resync covers it
                log.exception("could not read relayed event %s #%d", key, seq)
                fetched = None
            if fetched is None:
                stale.append(key)
            else:
                events.append(LiveEvent(key, seq, kind, fetched.payload, fetched.run, origin))
        self._publish(events, resync=resync, stale=stale)

    def _publish(
        self, events: list[LiveEvent], resync: bool = False, stale: list[str] | None = None
    ) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        broker = self.broker

        def publish() -> None:
            for event in events:
                broker.publish(event)
            if resync:
                broker.resync()
            for key in stale or ():
                broker.resync(key)

        try:
            loop.call_soon_threadsafe(publish)
        except RuntimeError:  # the loop closed meanwhile: the app is stopping
            pass
