"""Replay a run with overrides, and keep the diff between a run and its replay.

A replay is a new run with the parent's prompt and settings, some of them
overridden (model, temperature, max tokens, max rounds, system prompt, tools,
session), linked to its parent (``parent_run_id``, ``parent_kind='replay'``).
It runs and streams like any run. Its diff row is created ``pending`` as it
starts, so ``POST /api/runs/{id}/replay`` can answer with the diff id at once;
the diff is computed when the replay ends, or on first view if the process
stopped before (``ensure_diff`` is idempotent: the first fill wins).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import msgspec

from agents.config import AgentConfig
from app.core.errors import InputError
from app.replay.diff_store import create_diff, fill_diff, get_diff, new_diff_id
from app.replay.diffs import diff_runs
from app.runs.input import RunInput, RunSettings, parse_run_input
from app.runs.runner import Runner
from app.store import Store
from app.store.runs import get_run, run_detail, run_params
from app.store.statuses import TERMINAL


class ReplayCreate(RunSettings, kw_only=True):
    """Overrides for a replay; a field left out (or null) keeps the original run's value.

    ``system_prompt: ""`` removes the system prompt and ``tools: []`` disables
    every tool.
    """


OVERRIDABLE = ReplayCreate.__struct_fields__


def overrides_of(body: ReplayCreate) -> dict[str, Any]:
    """The fields a replay body sets (a null keeps the original's value)."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}


class DiffCreate(msgspec.Struct, kw_only=True):
    """Two runs to compare and keep the diff of (``a`` before, ``b`` after)."""

    a: Annotated[str, msgspec.Meta(pattern=r"\S", description="A run's id")]
    b: Annotated[str, msgspec.Meta(pattern=r"\S", description="A run's id")]


class RunNotFound(LookupError):
    """A run named in a replay or comparison does not exist (a 404)."""


def replay_input(
    parent: dict[str, Any], overrides: dict[str, Any], config: AgentConfig, known_tools: list[str]
) -> RunInput:
    """The parent's prompt and settings with ``overrides`` applied, validated like a new run.

    An override that is None (or absent) keeps the parent's value; an empty
    ``system_prompt`` removes the system prompt; ``tools=[]`` disables all tools.
    """
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise InputError(
            f"cannot override {', '.join(unknown)}; overridable: {', '.join(OVERRIDABLE)}"
        )
    if not parent.get("prompt"):
        raise InputError(f"run {parent['id']} has no prompt to replay")
    params = run_params(parent)
    data: dict[str, Any] = {
        "prompt": parent["prompt"],
        "model": parent.get("model") or params.get("model"),
        "temperature": params.get("temperature"),
        "max_tokens": params.get("max_tokens"),
        "max_rounds": params.get("max_rounds"),
        "system_prompt": params.get("system_prompt"),
        "tools": params.get("tools"),
        "session": parent.get("session_id"),
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    tools = data.get("tools")
    if (
        params.get("tools") is None
        and isinstance(tools, list)
        and sorted(tools) == sorted(known_tools)
    ):
        # Every tool ticked is what "all tools" meant for the parent: keep it unchanged.
        data["tools"] = None
    run_input = parse_run_input(data, config, known_tools)
    if data.get("tools") is None and run_input.request.tools is not None:
        # The parent had every tool: a model whose default is fewer must not take them away.
        run_input = RunInput(dataclasses.replace(run_input.request, tools=None), run_input.session)
    extra = params.get("extra") if isinstance(params.get("extra"), dict) else {}
    if extra:  # e.g. the depth of an agent's child run carries over to its replays
        run_input = RunInput(
            dataclasses.replace(run_input.request, extra=dict(extra)), run_input.session
        )
    return run_input


async def start_replay(
    runner: Runner, parent_id: str, overrides: dict[str, Any], source: str = "studio"
) -> tuple[dict[str, Any], str]:
    """Start the replay of ``parent_id``; return the new run row and the id of its diff."""
    store = runner.store
    parent = await store.read(get_run, parent_id)
    if parent is None:
        raise RunNotFound(f"run {parent_id!r} not found")
    if parent["status"] not in TERMINAL:
        raise InputError(
            f"run {parent_id} is still {parent['status']}; replay it once it has ended"
        )
    run_input = replay_input(parent, overrides, runner.config, runner.tool_names)
    diff_id = new_diff_id()

    async def after(_run_id: str) -> None:
        await ensure_diff(store, diff_id)

    run = await runner.start(
        run_input, source=source, parent_run_id=parent_id, parent_kind="replay", after=after
    )
    # Submitted to the single writer before the run's task has run at all, so
    # the diff row is committed before the replay's first event, let alone its end.
    await store.write(
        create_diff, parent_id, run["id"], "replay", changed_settings(parent, run), diff_id
    )
    return run, diff_id


def changed_settings(parent: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """What the replay runs with that differs from its parent (a form sends every field)."""
    before, after = run_params(parent), run_params(run)
    changed = {
        key: after.get(key)
        for key in ("temperature", "max_tokens", "max_rounds", "system_prompt", "tools")
        if after.get(key) != before.get(key)
    }
    if run.get("model") != parent.get("model"):
        changed["model"] = run.get("model")
    if run.get("session_id") != parent.get("session_id"):
        changed["session"] = run.get("session_id")
    return changed


def _compute(db: Any, run_a: str, run_b: str) -> dict[str, Any] | None:
    """The diff of two ended runs, or None while either is still going."""
    a, b = run_detail(db, run_a), run_detail(db, run_b)
    if a is None or b is None:
        return None
    if a["run"]["status"] not in TERMINAL or b["run"]["status"] not in TERMINAL:
        return None
    return diff_runs(a, b)


async def ensure_diff(store: Store, diff_id: str) -> dict[str, Any] | None:
    """The diff row, computed first if it is pending and both runs have ended."""
    row = await store.read(get_diff, diff_id)
    if row is None or row["status"] == "ready":
        return row
    # Computed on a reader thread: difflib on long answers must not hold the writer.
    data = await store.read(_compute, row["run_a"], row["run_b"])
    if data is None:
        return row
    await store.write(fill_diff, diff_id, data)
    return await store.read(get_diff, diff_id)


async def compare_runs(store: Store, run_a: str, run_b: str) -> dict[str, Any]:
    """A diff of any two ended runs, computed now and not stored (``/diffs/new``)."""
    for run_id in (run_a, run_b):
        run = await store.read(get_run, run_id)
        if run is None:
            raise RunNotFound(f"run {run_id!r} not found")
        if run["status"] not in TERMINAL:
            raise InputError(f"run {run_id} is still {run['status']}; compare it once it has ended")
    data = await store.read(_compute, run_a, run_b)
    assert data is not None
    return data


async def save_comparison(store: Store, run_a: str, run_b: str) -> dict[str, Any]:
    """Store a diff of two existing runs (computed now if both have ended)."""
    for run_id in (run_a, run_b):
        if await store.read(get_run, run_id) is None:
            raise RunNotFound(f"run {run_id!r} not found")
    row = await store.write(create_diff, run_a, run_b, "compare")
    diff = await ensure_diff(store, row["id"])
    assert diff is not None  # the row was just created and diffs are never deleted
    return diff
