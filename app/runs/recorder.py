"""The recorder: persist each agent event, then publish it live.

It implements the agent loop's ``EventSink``. Writing before publishing is
what lets a late or reconnecting viewer replay from SQLite and then follow
the broker without gaps or duplicates.

Writes go through the store's group-commit writer, which commits in queue
order. Only the events around something outside the studio are awaited
(``AWAITED_EVENTS``: a model or a tool is about to be called or has answered,
or the run has ended): the loop goes on once that event, and so every one
before it, is durable. The others are queued without waiting, which spares
the loop a round trip to the writer thread per event; a write that fails is
seen by the next event, and the run's later writes are not made (one
``Chain`` per run), so its log never goes on past a lost event. Streamed
pieces (tokens, pieces of tool-call arguments) are also buffered while the
run's previous write commits. Every event is published from its commit's
callback, in order.

When the store cannot write an event, the run is over: the recorder ends it
``failed`` through writes of its own (retried with backoff, else kept by the
store for when it can write again, or for the next start), publishes the
end to live followers whether or not it was stored, and raises
:class:`StorageUnavailable` for this and every later event, so the agent
loop stops instead of generating into a store that cannot keep it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from agents.events import Event
from app.store import Store
from app.store.db import StorageUnavailable
from app.store.events import (
    STREAMED_EVENTS,
    end_active_run,
    fold_call,
    record_event,
    record_streamed,
)
from app.store.failures import as_failed, fail_active_run
from app.store.live import Broker, LiveEvent
from app.store.runs import get_run
from app.store.writer import Chain

log = logging.getLogger(__name__)

# Writes of the run's end: a full disk may free a little space (a checkpoint,
# another process deleting files) within a few seconds.
END_ATTEMPTS = 4
END_BACKOFF_S = (0.2, 2.0)  # first wait, longest wait


# Writes queued without waiting after which the recorder waits for the writer
# (back-pressure: a model faster than the disk is slowed down rather than buffered
# without bound).
MAX_IN_FLIGHT = 1000

# Events the loop waits to be durable before it goes on: those around a call outside
# the studio (after a storage failure no model or tool is called; a crash loses
# neither that one was asked nor what it answered and cost, which alerts read), and the
# run's end (whoever started it reads its outcome next). Waiting for these also spaces
# out a run's heavier writes, so others' tokens are not queued behind a burst of them.
AWAITED_EVENTS = frozenset(
    {
        "llm_call_started",
        "llm_call_finished",
        "tool_call_started",
        "tool_call_finished",
        "run_finished",
        "run_failed",
    }
)


class Recorder:
    def __init__(self, store: Store, broker: Broker, run_id: str, last_seq: int = 0) -> None:
        self.store = store
        self.broker = broker
        self.run_id = run_id
        self.seq = last_seq  # the last sequence number handed out
        self.published_seq = last_seq  # the last one durable and published
        self.storage_failure: StorageUnavailable | None = None
        # The run's writes, in order: after one fails, the later ones are not written
        # (the log has no hole) and fail with the same error.
        self._chain = Chain()
        # That first error, as a write not awaited reported it (in order, on this loop):
        # the next event ends the run failed (a storage failure), or fails it with the
        # error (a bug, a constraint), as if the loop had waited for that write.
        self._write_failure: BaseException | None = None
        self._in_flight_count = 0
        # Streamed pieces not yet queued, and streamed writes queued but not yet committed.
        self._streamed: list[tuple[int, dict]] = []
        self._streaming = 0
        # Streamed since the last message: the call to fold once its answer is stored.
        self._pieces: list[tuple[int, dict]] = []

    async def emit(self, event: Event) -> None:
        await self.emit_dict(event.to_dict())

    async def emit_dict(self, payload: dict) -> None:
        if self.storage_failure is not None:
            raise self.storage_failure  # the run was ended failed: nothing more is recorded
        failure = self._write_failure
        if isinstance(failure, StorageUnavailable):
            await self._end_failed(failure)
            raise failure
        if failure is not None and payload["type"] != "run_failed":
            raise RuntimeError(
                f"an event of this run could not be recorded: {failure}"
            ) from failure
        self.seq += 1
        seq = self.seq
        if payload["type"] in STREAMED_EVENTS:
            # Pieces wait in a buffer while the run's previous write is being committed,
            # then go as one write (app.store.events.record_streamed): one write per
            # commit however fast the model is. Committed in order with the run's other
            # writes (one writer, one queue), published from the commit's callback.
            self._streamed.append((seq, payload))
            self._pieces.append((seq, payload))
            if not self._streaming:
                self._flush_streamed()
            await self._hold_back()
            return
        self._flush_streamed()  # earlier pieces first: the writer keeps queue order
        done = functools.partial(self._written, seq)
        # Shielded: a run cancelled mid-write (server shutdown) still commits
        # the event it was writing, so the log never has a hole.
        awaited = payload["type"] in AWAITED_EVENTS
        write = self.store.queue(
            record_event,
            self.run_id,
            seq,
            payload,
            on_done=done,
            wait=awaited,
            # The run's failure is recorded even after a lost event (its error says why).
            chain=None if payload["type"] == "run_failed" else self._chain,
        )
        if awaited:
            assert write is not None
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await self._settle(write)
                raise
            except StorageUnavailable as exc:
                await self._end_failed(exc)
                raise
            self._in_flight_count = 0  # every earlier queued write is committed too
        else:
            await self._hold_back()
        if payload["type"] == "message" and len(self._pieces) > 1:
            # The call's answer is stored: its pieces can become one row. Deferrable, so
            # a burst of calls ending together does not stall the others' live writes.
            self.store.queue(
                fold_call,
                self.run_id,
                seq,
                payload.get("content"),
                self._pieces,
                wait=False,
                idle=True,
                chain=self._chain,
            )
        if payload["type"] == "message":
            self._pieces = []

    async def _hold_back(self) -> None:
        """Count a write queued without waiting; after ``MAX_IN_FLIGHT`` of them, wait for
        the writer to catch up (back-pressure)."""
        self._in_flight_count += 1
        if self._in_flight_count < MAX_IN_FLIGHT:
            return
        self._in_flight_count = 0
        self._flush_streamed()
        await asyncio.shield(self.store.flush())

    def _flush_streamed(self) -> None:
        """Queue the buffered pieces as one write."""
        if not self._streamed:
            return
        batch, self._streamed = self._streamed, []
        self._streaming += 1
        self.store.queue(
            record_streamed,
            self.run_id,
            batch,
            on_done=functools.partial(self._streamed_written, batch),
            wait=False,
            chain=self._chain,
        )

    def _streamed_written(
        self, batch: list[tuple[int, dict]], _: Any, error: BaseException | None
    ) -> None:
        self._streaming -= 1
        if error is None:
            # Every piece of a model call passes here: publish without _written's checks.
            publish, run_id = self.broker.publish, self.run_id
            for seq, payload in batch:
                publish(LiveEvent(run_id, seq, payload["type"], payload, None))
            self.published_seq = max(self.published_seq, batch[-1][0])
        else:
            for seq, _payload in batch:
                self._written(seq, None, error)
        if not self._streaming:
            self._flush_streamed()  # what streamed meanwhile goes with the next commit

    def _written(self, seq: int, stored: Any, error: BaseException | None) -> None:
        """A write's outcome, on the event loop once its batch committed: publish it."""
        if error is None:
            event, run = stored
            self.published_seq = max(self.published_seq, seq)
            self.broker.publish(LiveEvent(self.run_id, seq, event["type"], event, run))
        elif self._write_failure is None:  # the run's later writes fail with it, unlogged
            self._write_failure = error
            if not isinstance(error, StorageUnavailable):  # the store logs its own failures
                log.error("run %s: event %d could not be recorded: %s", self.run_id, seq, error)

    async def _settle(self, write: asyncio.Future[Any]) -> None:
        """Finish the write a cancellation interrupted (its callback publishes it)."""
        try:
            await write
        except StorageUnavailable as exc:
            await self._end_failed(exc)

    async def end_if_active(self, kind: str, error: str) -> None:
        """Record the terminal event ``kind`` unless the run has ended already."""
        if self.storage_failure is not None:
            return  # ended failed already, or kept to be written failed when the store can
        self._flush_streamed()  # pieces still buffered come before the end
        ended = await self.store.write(end_active_run, self.run_id, kind, time.time(), error)
        if ended is not None:
            self._published(*ended)

    def _published(self, seq: int, stored: dict, run: dict | None) -> None:
        self.seq = max(self.seq, seq)
        self.published_seq = max(self.published_seq, seq)
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
                LiveEvent(self.run_id, self.published_seq + 1, "run_failed", payload, run)
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
