"""The recorder: persist each agent event, then publish it live.

It implements the agent loop's ``EventSink``. Writing before publishing is
what lets a late or reconnecting viewer replay from SQLite and then follow
the broker without gaps or duplicates.
"""

from __future__ import annotations

import asyncio

from agents.events import Event
from app.live import Broker, LiveEvent
from app.store import Store
from app.store.events import record_event


class Recorder:
    def __init__(self, store: Store, broker: Broker, run_id: str, last_seq: int = 0) -> None:
        self.store = store
        self.broker = broker
        self.run_id = run_id
        self.seq = last_seq

    async def emit(self, event: Event) -> None:
        await self.emit_dict(event.to_dict())

    async def emit_dict(self, payload: dict) -> None:
        seq = self.seq + 1
        # Shielded: a run cancelled mid-write (server shutdown) still commits
        # the event it was writing, so the log never has a hole.
        write = asyncio.ensure_future(self.store.write(record_event, self.run_id, seq, payload))
        try:
            stored, run = await asyncio.shield(write)
        except asyncio.CancelledError:
            stored, run = await write
            self._published(seq, stored, run)
            raise
        self._published(seq, stored, run)

    def _published(self, seq: int, stored: dict, run: dict | None) -> None:
        self.seq = seq
        self.broker.publish(LiveEvent(self.run_id, seq, stored["type"], stored, run))
