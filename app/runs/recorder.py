"""The recorder: persist each agent event, then publish it live.

It implements the agent loop's ``EventSink``. Writing before publishing is
what lets a late or reconnecting viewer replay from SQLite and then follow
the broker without gaps or duplicates.

When the store cannot write an event, the run is over: the recorder ends it
``failed`` through writes of its own (retried with backoff, else kept by the
store for when it can write again, or for the next start), publishes the
end to live followers whether or not it was stored, and raises
:class:`StorageUnavailable` for this and every later event, so the agent
loop stops instead of generating into a store that cannot keep it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from agents.events import Event
from app.store import Store
from app.store.db import StorageUnavailable
from app.store.events import end_active_run, record_event
from app.store.failures import as_failed, fail_active_run
from app.store.live import Broker, LiveEvent
from app.store.runs import get_run

log = logging.getLogger(__name__)

# Writes of the run's end: a full disk may free a little space (a checkpoint,
# another process deleting files) within a few seconds.
END_ATTEMPTS = 4
END_BACKOFF_S = (0.2, 2.0)  # first wait, longest wait


class Recorder:
    def __init__(self, store: Store, broker: Broker, run_id: str, last_seq: int = 0) -> None:
        self.store = store
        self.broker = broker
        self.run_id = run_id
        self.seq = last_seq
        self.storage_failure: StorageUnavailable | None = None

    async def emit(self, event: Event) -> None:
        await self.emit_dict(event.to_dict())

    async def emit_dict(self, payload: dict) -> None:
        if self.storage_failure is not None:
            raise self.storage_failure  # the run was ended failed: nothing more is recorded
        seq = self.seq + 1
        # Shielded: a run cancelled mid-write (server shutdown) still commits
        # the event it was writing, so the log never has a hole.
        write = asyncio.ensure_future(self.store.write(record_event, self.run_id, seq, payload))
        try:
            stored, run = await asyncio.shield(write)
        except asyncio.CancelledError:
            await self._settle(seq, write)
            raise
        except StorageUnavailable as exc:
            await self._end_failed(exc)
            raise
        self._published(seq, stored, run)

    async def _settle(self, seq: int, write: asyncio.Future[Any]) -> None:
        """Finish the write a cancellation interrupted."""
        try:
            stored, run = await write
        except StorageUnavailable as exc:
            await self._end_failed(exc)
        else:
            self._published(seq, stored, run)

    async def end_if_active(self, kind: str, error: str) -> None:
        """Record the terminal event ``kind`` unless the run has ended already."""
        if self.storage_failure is not None:
            return  # ended failed already, or kept to be written failed when the store can
        ended = await self.store.write(end_active_run, self.run_id, kind, time.time(), error)
        if ended is not None:
            self._published(*ended)

    def _published(self, seq: int, stored: dict, run: dict | None) -> None:
        self.seq = seq
        self.broker.publish(LiveEvent(self.run_id, seq, stored["type"], stored, run))

    async def _end_failed(self, failure: StorageUnavailable) -> None:
        """End the run failed after ``failure``, without relying on the write that failed."""
        self.storage_failure = failure
        at = time.time()
        error = f"storage failure: {failure.cause}; the run was stopped"
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(END_ATTEMPTS),
                wait=wait_exponential(multiplier=END_BACKOFF_S[0], max=END_BACKOFF_S[1]),
                retry=retry_if_exception_type(StorageUnavailable),
                reraise=True,
            ):
                with attempt:
                    ended = await self.store.write(fail_active_run, self.run_id, at, error)
        except StorageUnavailable:
            log.error(
                "run %s failed (%s) and its end could not be written; it is recorded"
                " once the store can write again, or at the next start",
                self.run_id,
                failure.cause,
            )
            await self.store.remember_unended(self.run_id, at, error)
            # Live followers (and those who come later) must see the run end all the same.
            payload = {"type": "run_failed", "at": at, "error": error}
            run = await self._run_as_failed(at, error)
            self.broker.publish_unstored_end(
                LiveEvent(self.run_id, self.seq + 1, "run_failed", payload, run)
            )
            return
        if ended is not None:  # else something else ended the run meanwhile, and said so
            self._published(*ended)

    async def _run_as_failed(self, at: float, error: str) -> dict[str, Any] | None:
        """The run row as it will be once its end is written (reads still work on a full disk)."""
        try:
            run = await self.store.read(get_run, self.run_id)
        except StorageUnavailable:
            return None
        return None if run is None else as_failed(run, at, error)
