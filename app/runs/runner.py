"""Starting runs: validate input, pick the provider, run the agent as a task.

Runs execute in-process as asyncio tasks. A run that is cancelled (server
shutting down) is recorded as interrupted; a run left running by a crash is
marked interrupted at the next start (see ``app.store.events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents.config import AgentConfig
from agents.loop import RunRequest, run_agent
from agents.providers.base import Provider
from agents.providers.local import LocalProvider
from agents.providers.mistral import MistralProvider, RetryPolicy
from agents.tools import DEFAULT_TOOL_THREADS, Tool, ToolPool, load_tool
from app.core.background import TaskSet
from app.core.errors import InputError, RunQueueFull, ServerStopping
from app.runs.input import RunInput
from app.runs.recorder import Recorder
from app.runs.subagents import make_delegate
from app.store import Store
from app.store.db import StorageUnavailable
from app.store.live import RUN_CREATED_SEQ, Broker, LiveEvent
from app.store.runs import create_run

log = logging.getLogger(__name__)


class Runner:
    """Owns the providers, the tools and the tasks of runs in progress."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        config: AgentConfig,
        data_dir: Path,
        extra_providers: list[Any] | None = None,
        max_concurrent: int = 8,
        owner: str | None = None,
        tool_threads: int = DEFAULT_TOOL_THREADS,
        max_queued: int = 64,
    ) -> None:
        self.store = store
        # The process (``processes`` row) that executes these runs; see app/runs/process_registry.py.
        self.owner = owner
        self.broker = broker
        self.config = config
        self.data_dir = data_dir
        self.local = LocalProvider(list(config.local_models))
        self.mistral: MistralProvider | None = None
        if config.mistral.api_key:
            self.mistral = MistralProvider(
                api_key=config.mistral.api_key,
                server_url=config.mistral.server_url or None,
                retry=RetryPolicy(
                    initial_ms=config.mistral.retry_initial_ms,
                    max_elapsed_ms=config.mistral.retry_max_elapsed_ms,
                ),
                timeout_ms=config.mistral.timeout_ms,
            )
        # Extra providers (tests, benchmarks) answer for the models they list.
        self.extra_providers = list(extra_providers or [])
        # Fine-tuned models registered once their job succeeded (app/finetune/jobs.py); served by Mistral.
        self.registered_models: list[str] = []
        self.tasks: TaskSet[str] = TaskSet()
        self.stopping = False  # drain(): no new runs
        self._slots = asyncio.Semaphore(max_concurrent)
        # Runs that take a slot, running or queued for one: past the slots
        # plus ``max_queued``, start() refuses with RunQueueFull.
        self._max_admitted = max_concurrent + max_queued
        self._admitted = 0
        # Blocking tools run here, never on asyncio's default pool (store
        # readers, alerts and exports use that one).
        self.tool_pool = ToolPool(tool_threads)

    @property
    def tool_names(self) -> list[str]:
        return list(self.config.tools)

    def model_choices(self) -> list[tuple[str, str]]:
        extra = [(m, p.name) for p in self.extra_providers for m in getattr(p, "models", ())]
        registered = [(m, "mistral") for m in self.registered_models] if self.mistral else []
        return self.config.model_choices() + extra + registered

    def provider_for(self, model: str) -> Provider:
        for provider in self.extra_providers:
            if model in getattr(provider, "models", ()):
                return provider
        if self.local.has_model(model):
            return self.local
        if self.mistral is not None:
            return self.mistral
        names = ", ".join(m for m, _ in self.model_choices()) or "none"
        raise InputError(
            f"unknown model {model!r}; available: {names}. "
            "Set MISTRAL_API_KEY to run Mistral models."
        )

    def tools_for(self, names: tuple[str, ...] | None, run_id: str | None = None) -> list[Tool]:
        """The tools named, bound to their settings; None: every configured tool.

        A run that named no tools has its model's default tools written in
        already (``app.runs.input.to_run_input``); None here is a run that had
        every tool, e.g. the replay of one."""
        wanted = self.tool_names if names is None else list(names)
        base = {"data_dir": str(self.data_dir)}
        tools = []
        for n in wanted:
            settings = {**base, **self.config.tools.get(n, {})}
            if n == "ask_agent" and run_id is not None:
                # The one tool that needs the runner itself: it starts a child run.
                settings["delegate"] = make_delegate(self, run_id)
            tools.append(load_tool(n, settings, self.tool_pool))
        return tools

    async def start(
        self,
        run_input: RunInput,
        source: str = "studio",
        parent_run_id: str | None = None,
        parent_kind: str | None = None,
        after: Callable[[str], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Create the run row and start the agent in the background.

        ``parent_kind`` says what the parent is to this run (``replay`` or
        ``agent``); ``after(run_id)`` is awaited when the run has ended (not
        when it is interrupted by a stop).
        """
        if self.stopping and parent_kind != "agent":
            raise ServerStopping(
                "this server is stopping and takes no new runs; start the run again"
                " (another replica, or this one once it is back)"
            )
        request = run_input.request
        provider = self.provider_for(request.model)
        # A child run works for a parent that holds a slot already: taking one
        # too could deadlock when every slot is held by a waiting parent. So
        # child runs never queue and are bounded by the nesting depth instead.
        slot = parent_kind != "agent"
        if slot:
            self._admit()
        run_id = uuid.uuid4().hex[:16]
        try:
            tools = self.tools_for(request.tools, run_id)
            run = await self._create(
                run_id, run_input, provider, source, parent_run_id, parent_kind
            )
        except BaseException:
            if slot:
                self._release()
            raise
        # Lists open in browsers show the run from its creation (it may queue).
        self.broker.publish(LiveEvent(run_id, RUN_CREATED_SEQ, "run_created", {}, run))
        task = self.tasks.spawn(
            run_id, self._execute(run_id, request, provider, tools, slot, after)
        )
        if slot:
            # A done callback, not a finally: it runs even for a task cancelled before its first step.
            task.add_done_callback(lambda _t: self._release())
        return run

    def _release(self) -> None:
        self._admitted -= 1

    def _admit(self) -> None:
        """Count one more run for a slot, or refuse it when the queue is full.

        Synchronous, before any await: two requests cannot both take the last place.
        """
        if self._admitted >= self._max_admitted:
            raise RunQueueFull(
                f"too many runs are waiting already ({self._admitted} running or queued); "
                "try again in a few seconds"
            )
        self._admitted += 1

    async def _create(
        self,
        run_id: str,
        run_input: RunInput,
        provider: Provider,
        source: str,
        parent_run_id: str | None,
        parent_kind: str | None,
    ) -> dict[str, Any]:
        request = run_input.request
        return await self.store.write(
            create_run,
            {
                "id": run_id,
                "session_id": run_input.session,
                "parent_run_id": parent_run_id,
                "parent_kind": parent_kind if parent_run_id else None,
                "model": request.model,
                "provider": provider.name,
                "params": request.params(),
                "prompt": request.prompt,
                "source": source,
                "started_at": time.time(),
                "owner": self.owner,
            },
        )

    async def _execute(
        self,
        run_id: str,
        request: RunRequest,
        provider: Provider,
        tools: list[Tool],
        slot: bool = True,
        after: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        recorder = Recorder(self.store, self.broker, run_id)
        try:
            async with self._slots if slot else contextlib.nullcontext():
                await run_agent(request, provider, tools, recorder)
            if after is not None:
                try:
                    await after(run_id)
                except Exception:  # noqa: BLE001 - the run itself is recorded; only the hook failed
                    log.exception("after-run hook of run %s failed", run_id)
        except asyncio.CancelledError as stop:
            # cancel(run_id, reason) passes its reason along; a shutdown gives none.
            reason = stop.args[0] if stop.args else "interrupted: the server stopped during the run"
            # Unless something ended the run first (the watchdog records it failed, then cancels).
            with contextlib.suppress(Exception):
                await asyncio.shield(recorder.end_if_active("run_interrupted", reason))
            raise
        except StorageUnavailable as exc:
            # Expected when the disk fills: the recorder has ended the run already.
            log.error("run %s stopped: %s", run_id, exc)
        except Exception:  # noqa: BLE001 - a recorder failure must not kill the server
            log.exception("run %s crashed outside the agent loop", run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> None:
        await self.tasks.wait(run_id, timeout)

    async def cancel(self, run_id: str, reason: str, grace_s: float = 10.0) -> None:
        """Stop a run in progress, recorded interrupted with ``reason``; wait for it to end."""
        await self.tasks.cancel(run_id, reason, grace_s)

    async def drain(self, timeout_s: float) -> None:
        """Stop taking runs and let those in flight finish, for up to ``timeout_s``.

        A replica stopped by a rolling update drains (``AGENTOP_DRAIN_S``): its
        runs end as they would have, and browsers following them reconnect to
        another replica, which relays their events. Child runs of a running
        agent are still started: their parent waits for them.
        """
        self.stopping = True
        if timeout_s <= 0 or not self.tasks:
            return
        log.info("stopping: letting %d run(s) finish, up to %g s", len(self.tasks), timeout_s)
        left = await self.tasks.drain(timeout_s)
        if left:
            log.warning("stopping: %d run(s) still running are interrupted", left)

    async def shutdown(self) -> None:
        self.stopping = True
        await self.tasks.cancel_all()
        self.tool_pool.shutdown()
        await self.local.close()  # the local models' worker processes
