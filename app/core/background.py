"""Background tasks: keyed by the row they work on, or repeating on a timer.

Runs, experiments, exports and fine-tune jobs all start an asyncio task per
row, need to await one (tests, the CLI) and cancel them all on shutdown
(:class:`TaskSet`). The heartbeat and the watchdog each do one thing every
few seconds for as long as the process serves (:class:`Periodic`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class TaskSet(Generic[K]):
    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[Any]] = {}

    def spawn(self, key: K, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coro``; it leaves the set when it ends, however it ends."""
        task = asyncio.create_task(coro)
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))
        return task

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, key: K, timeout: float | None = None) -> None:
        """Wait for one task (if still running) without cancelling it on timeout."""
        task = self._tasks.get(key)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)

    async def cancel(self, key: K, reason: str, grace_s: float = 10.0) -> None:
        """Cancel one task with ``reason`` (its CancelledError's argument); wait for it to end."""
        task = self._tasks.get(key)
        if task is None or task.done():
            return
        task.cancel(reason)
        await asyncio.wait({task}, timeout=grace_s)

    async def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for every task to end on its own (tasks spawned
        meanwhile too); how many are still running then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks.values()), timeout=left)
        return len(self._tasks)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class Periodic:
    """Await ``step()`` every ``every_s`` seconds in a task of its own, until stopped.

    A step that fails is logged and the next one runs all the same: what
    repeats (a heartbeat, a watchdog pass) must outlive any one bad pass.
    Exceptions in ``quiet`` are expected (their cause is reported elsewhere)
    and are not logged.
    """

    def __init__(
        self,
        name: str,
        every_s: float,
        step: Callable[[], Awaitable[Any]],
        quiet: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        self.every_s = every_s
        self.step = step
        self.quiet = quiet
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._repeat(), name=self.name)

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.step()
            except self.quiet:
                pass
            except Exception:  # noqa: BLE001 - the next step runs all the same
                log.exception("%s failed", self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
