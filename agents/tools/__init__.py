"""Tools an agent can call.

Each tool is a module in this package named after the tool, defining ``SPEC``
(a :class:`~agents.providers.base.ToolSpec`) and ``run(arguments, settings)``.
``run`` is either a plain function, run on a bounded :class:`ToolPool` of
threads, or an ``async def``, awaited on the event loop (for tools that only
wait on other async work, such as ``ask_agent`` waiting on a child run: they
hold no thread). ``agents/config.yaml`` says which tools are enabled and with
what settings, so adding a tool is adding a module and a config entry: no
registry to keep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.providers.base import ToolSpec

log = logging.getLogger(__name__)

DEFAULT_TOOL_THREADS = 8
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returns: text for the model, plus cost lines beyond tokens."""

    text: str
    cost_lines: tuple[dict[str, Any], ...] = field(default_factory=tuple)


class ToolTimedOut(Exception):
    """A call ran past its tool's time limit.

    Not a ``TimeoutError``: a tool's own timeout (an upstream connect timeout)
    is that tool's error and must not read as the loop's time limit.
    """


class ToolPool:
    """The threads blocking tools run on, bounded, apart from everything else.

    At most ``threads`` blocking calls run at once; more wait their turn
    (inside their time limit). Python cannot kill a thread, so a call past its
    time limit is *abandoned*: the caller gets :class:`ToolTimedOut` at once
    and the call's place is given back to new calls, while its thread runs on
    until the call returns. Tools that do network I/O pass their time limit to
    their HTTP client, so that is seconds later, not never.

    The bound, by design: the executor holds ``threads`` spare threads for
    abandoned calls, so up to ``threads`` hung calls cost new calls nothing.
    Beyond that, new calls fail at once with a message saying so instead of
    queueing behind threads that may never come back; at most ``2 * threads``
    tool threads ever exist.
    """

    def __init__(self, threads: int = DEFAULT_TOOL_THREADS) -> None:
        if threads < 1:
            raise ValueError("a tool pool needs at least one thread")
        self.threads = threads
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2 * threads, thread_name_prefix="agent-tool"
        )
        # Created on first use: an asyncio primitive belongs to the loop it runs on.
        self._places: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._abandoned = 0

    @property
    def abandoned(self) -> int:
        """Calls given up on whose threads have not returned yet."""
        with self._lock:
            return self._abandoned

    async def run(self, func: Callable[[], ToolOutput]) -> ToolOutput:
        """Run ``func`` on a tool thread; cancelling the caller abandons a started call."""
        # Up to ``threads`` abandoned calls leave every live call a thread of its own.
        if self.abandoned > self.threads:
            raise RuntimeError(
                f"{self.abandoned} earlier tool calls are still stuck past their time limit; "
                "try again once they return"
            )
        if self._places is None:
            self._places = asyncio.Semaphore(self.threads)
        async with self._places:
            future = self._executor.submit(func)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                # Not started yet: it never will be. Started: abandon its thread.
                if not future.cancel() and not future.done():
                    self._abandon(future)
                raise

    def _abandon(self, future: concurrent.futures.Future[ToolOutput]) -> None:
        with self._lock:
            self._abandoned += 1
        log.warning("a tool call passed its time limit; its thread is left to finish on its own")

        def returned(_future: concurrent.futures.Future[ToolOutput]) -> None:
            with self._lock:
                self._abandoned -= 1

        future.add_done_callback(returned)

    def shutdown(self) -> None:
        """Stop taking calls; abandoned threads are not waited for."""
        self._executor.shutdown(wait=False, cancel_futures=True)


ToolFunc = Callable[[dict[str, Any], dict[str, Any]], ToolOutput | Awaitable[ToolOutput]]


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    func: ToolFunc
    settings: dict[str, Any]
    timeout_s: float = DEFAULT_TIMEOUT_S
    # None (unit tests, scripts): blocking calls go to asyncio's default executor.
    pool: ToolPool | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def __call__(self, arguments: dict[str, Any]) -> Any:
        """Call the tool directly: a ToolOutput, or for an async tool an awaitable of one."""
        return self.func(arguments, self.settings)

    async def invoke(self, arguments: dict[str, Any]) -> ToolOutput:
        """Run one call within the time limit; :class:`ToolTimedOut` past it."""
        limit = asyncio.timeout(self.timeout_s)
        try:
            async with limit:
                return await self._run(arguments)
        except TimeoutError:
            if limit.expired():
                raise ToolTimedOut(f"timed out after {self.timeout_s:g}s") from None
            raise

    async def _run(self, arguments: dict[str, Any]) -> ToolOutput:
        if self.is_async:
            # On the loop: a timeout or a cancelled run cancels the call itself.
            result: ToolOutput = await self.func(arguments, self.settings)  # type: ignore[misc]
            return result
        if self.pool is not None:
            return await self.pool.run(lambda: self(arguments))
        return await asyncio.to_thread(self, arguments)


def time_limit(settings: dict[str, Any]) -> float:
    """A tool's time limit in seconds, for its own HTTP calls too.

    Passing it down makes a blocking tool give up by itself rather than leave
    an abandoned thread behind (see :class:`ToolPool`).
    """
    return float(settings.get("timeout") or DEFAULT_TIMEOUT_S)


def load_tool(name: str, settings: dict[str, Any], pool: ToolPool | None = None) -> Tool:
    """Import ``agents.tools.<name>`` and bind it to its settings (and its thread pool)."""
    if not name.isidentifier():
        raise ValueError(f"invalid tool name {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    return Tool(
        spec=module.SPEC,
        func=module.run,
        settings=dict(settings),
        timeout_s=time_limit(settings),
        pool=pool,
    )
