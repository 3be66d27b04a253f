"""Multi-agent runs: the ``ask_agent`` tool starts a child run through the Runner.

The child is a normal run (recorded, streamed, replayable) linked to its
parent with ``parent_kind='agent'``; it inherits the parent's model, settings
and session. ``agent_depth`` (kept in the run's ``params.extra``) bounds the
nesting: at ``max_depth`` (``tools.ask_agent.max_depth`` in the agent config,
default 2) the child gets no ``ask_agent`` tool of its own.

The parent awaits its child on the event loop, holding no thread and no run
slot (the child runs without taking one; see ``Runner.start``), so any number
of parents nesting helpers to the maximum depth cannot deadlock on threads or
slots. When the parent stops waiting (its run was cancelled, or its
``ask_agent`` call passed its time limit) the child is cancelled too and
recorded as interrupted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agents.config import AgentConfig
from app.runs.input import RunInput, parse_run_input
from app.store import Store
from app.store.runs import get_run
from app.store.statuses import SUCCEEDED


class Runner(Protocol):
    """What a helper run needs of the runner (``app.runs.runner.Runner``), which
    gives this module its ``ask_agent`` delegate: a protocol, so the two do not
    import each other."""

    store: Store
    config: AgentConfig

    @property
    def tool_names(self) -> list[str]: ...

    async def start(
        self,
        run_input: RunInput,
        source: str = ...,
        parent_run_id: str | None = ...,
        parent_kind: str | None = ...,
    ) -> dict[str, Any]: ...

    async def wait(self, run_id: str, timeout: float | None = ...) -> None: ...

    async def cancel(self, run_id: str, reason: str, grace_s: float = ...) -> None: ...


DEFAULT_MAX_DEPTH = 2
PARENT_STOPPED = "interrupted: the parent run stopped waiting for this helper"


def make_delegate(runner: Runner, parent_run_id: str) -> Callable[[str], Awaitable[str]]:
    """An async ``question -> answer`` for the tool; its time limit is the tool's own."""

    async def ask(question: str) -> str:
        return await ask_child(runner, parent_run_id, question)

    return ask


async def ask_child(runner: Runner, parent_run_id: str, question: str) -> str:
    """Run ``question`` as a child of ``parent_run_id``; its answer, or an error saying why not."""

    parent = await runner.store.read(get_run, parent_run_id)
    if parent is None:
        raise RuntimeError(f"parent run {parent_run_id} not found")
    params: dict[str, Any] = parent.get("params") or {}
    depth = int((params.get("extra") or {}).get("agent_depth") or 0) + 1
    settings = runner.config.tools.get("ask_agent") or {}
    max_depth = int(settings.get("max_depth") or DEFAULT_MAX_DEPTH)
    if depth > max_depth:
        raise RuntimeError(f"agents may nest at most {max_depth} deep")
    tools = params.get("tools")
    tools = list(runner.tool_names if tools is None else tools)
    if depth >= max_depth:
        tools = [t for t in tools if t != "ask_agent"]
    data = {
        "prompt": question,
        "model": parent["model"],
        "temperature": params.get("temperature"),
        "max_tokens": params.get("max_tokens"),
        "max_rounds": params.get("max_rounds"),
        "system_prompt": settings.get("system_prompt") or None,
        "tools": tools,
        "session": parent.get("session_id"),
    }
    run_input = parse_run_input(data, runner.config, runner.tool_names)
    request = dataclasses.replace(run_input.request, extra={"agent_depth": depth})
    child = await runner.start(
        RunInput(request, run_input.session),
        source="agent",
        parent_run_id=parent_run_id,
        parent_kind="agent",
    )
    try:
        await runner.wait(child["id"])
    except asyncio.CancelledError:
        # The parent stopped waiting (cancelled, or past its time limit): a
        # helper nobody waits for must not run on, unrecorded and unbounded.
        await runner.cancel(child["id"], PARENT_STOPPED)
        raise
    done = await runner.store.read(get_run, child["id"])
    if done is None or done["status"] != SUCCEEDED:
        status = done["status"] if done else "missing"
        error = (done or {}).get("error") or ""
        raise RuntimeError(f"helper agent run {child['id']} {status}: {error}".strip())
    return done["response"] or ""
