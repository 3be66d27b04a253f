"""A run's memory as ``/runs/{id}/memory`` shows it and ``/api/runs/{id}/memory`` returns it.

The two are not the same view: the page shows one step at a time (loading
only that step and the one before), the API every snapshot at once. Both
are built here from ``app.memory.snapshots``, so a change to what a step's
diff means reaches both.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

import msgspec

from app.memory.snapshots import all_snapshots, diff_snapshots, memory_view
from app.store import Store
from app.web.deps import existing_run


class ScratchChange(TypedDict):
    old: Any
    new: Any


class MemorySnapshot(TypedDict):
    """A row of ``memory_snapshots`` (messages and scratch as the loop held
    them) with what changed since the step before."""

    id: int
    run_id: str
    seq: int | None
    step: int
    label: str | None
    messages: list[dict[str, Any]] | None
    scratch: dict[str, Any] | None
    message_count: int | None
    at: float | None
    added: list[int]
    scratch_changed: dict[str, ScratchChange]


class RunMemory(msgspec.Struct):
    run_id: str
    snapshots: list[MemorySnapshot]


def _with_changes(snap: dict[str, Any], previous: dict[str, Any] | None) -> MemorySnapshot:
    diff = diff_snapshots(previous, snap)
    changes = {
        **snap,
        "added": [m["index"] for m in diff["messages"] if m["state"] == "added"],
        "scratch_changed": {
            s["key"]: {"old": s["old"], "new": s["value"]}
            for s in diff["scratch"]
            if s["state"] != "same"
        },
    }
    return cast(MemorySnapshot, changes)


async def run_memory(store: Store, run_id: str) -> RunMemory:
    """Every snapshot of a run, each with what changed since the previous; a 404 without the run."""
    await existing_run(store, run_id)
    snaps = await store.read(all_snapshots, run_id)
    out, previous = [], None
    for snap in snaps:
        out.append(_with_changes(snap, previous))
        previous = snap
    return RunMemory(run_id=run_id, snapshots=out)


async def memory_viewer(store: Store, run_id: str, step: int | None) -> dict[str, Any]:
    """The viewer at ``step`` (default: the last); a 404 without the run."""
    run = await existing_run(store, run_id)
    return {"run": run, "mem": await store.read(memory_view, run_id, step)}
