"""Background tasks keyed by the row they work on (a run, an export, a job).

Runs, experiments, exports and fine-tune jobs all start an asyncio task per
row, need to await one (tests, the CLI) and cancel them all on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


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

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
