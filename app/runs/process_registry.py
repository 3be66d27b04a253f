"""This process in the ``processes`` table: registered at start, a heartbeat, gone at stop.

``agentop serve`` registers as kind ``serve`` with the URL it answers on, so
an ``agentop run`` beside it sends its runs there; ``agentop run`` working
in-process registers as kind ``cli``, so a server starting meanwhile leaves
its runs alone. The heartbeat is an asyncio task renewing the lease through
the store's writer (``app.store.processes`` says what live means).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from app.core.background import Periodic
from app.store import Store
from app.store.processes import HEARTBEAT_S, heartbeat, register_process, remove_process

log = logging.getLogger(__name__)


class ProcessRegistration:
    """One process's row and the task that keeps its lease."""

    def __init__(
        self, store: Store, kind: str, url: str | None = None, every_s: float = HEARTBEAT_S
    ) -> None:
        self.store = store
        self.id = uuid.uuid4().hex[:16]
        now = time.time()
        self.row = {
            "id": self.id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "kind": kind,
            "url": url,
            "started_at": now,
            "heartbeat_at": now,
        }
        # A failed beat is logged and retried at the next.
        self._heartbeat = Periodic(f"heartbeat of process {self.id}", every_s, self._beat)

    async def start(self) -> None:
        self.row["heartbeat_at"] = time.time()
        await self.store.write(register_process, self.row)
        self._heartbeat.start()

    async def _beat(self) -> None:
        if not await self.store.write(heartbeat, self.row, time.time()):
            # Our lease ran out (the loop or the writer stalled) and a
            # server swept our unfinished runs; they will not record more.
            log.warning("process %s had lost its lease; registered again", self.id)

    async def stop(self) -> None:
        """Stop the heartbeat and delete the row (a clean stop leaves nothing to sweep)."""
        await self._heartbeat.stop()
        try:
            await self.store.write(remove_process, self.id)
        except Exception:  # noqa: BLE001 - a stale row is swept by the next server anyway
            log.exception("could not remove process %s", self.id)
