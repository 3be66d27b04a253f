"""The recorder: persist each agent event, then publish it live.

It implements the agent loop's ``EventSink``. Writing before publishing is
what lets a late or reconnecting viewer replay from SQLite and then follow
the broker without gaps or duplicates.
"""

from __future__ import annotations

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
        self.seq += 1
        stored, run = await self.store.write(record_event, self.run_id, self.seq, payload)
        self.broker.publish(LiveEvent(self.run_id, self.seq, stored["type"], stored, run))
