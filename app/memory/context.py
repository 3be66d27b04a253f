"""A run's memory as ``/runs/{id}/memory`` shows it and ``/api/runs/{id}/memory`` returns it.

The two are not the same view: the page shows one step at a time (loading
only that step and the one before), the API every snapshot at once. Both
are built here from ``app.memory.snapshots``, so a change to what a step's
diff means reaches both.

A step is linkable: ``?step=N`` selects it, on the memory page and on the run
page, and picking a step pushes that URL (``hx-push-url``) onto the viewer's
``home``: the run page when the viewer is part of it, else the memory page.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast
from urllib.parse import unquote, urlsplit

import msgspec

from app.core.errors import InputError
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


MAX_STEP = 1_000_000


def parse_step(raw: str | None) -> int | None:
    """``?step=`` as a step number; None when absent or empty; a 400 that says why otherwise."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or int(text) > MAX_STEP:
        raise InputError(f"step must be a whole number from 0 to {MAX_STEP:,}, got {raw[:40]!r}")
    return int(text)


def run_page_home(run_id: str) -> str:
    return f"/runs/{run_id}"


def memory_page_home(run_id: str) -> str:
    return f"/runs/{run_id}/memory"


def viewer_home(run_id: str, current_url: str | None) -> str:
    """Where picking a step is pushed to: the page the viewer is on (htmx's HX-Current-URL)."""
    path = unquote(urlsplit(current_url or "").path)
    return run_page_home(run_id) if path == run_page_home(run_id) else memory_page_home(run_id)


async def memory_viewer(
    store: Store, run_id: str, step: int | None, home: str | None = None
) -> dict[str, Any]:
    """The viewer at ``step`` (default: the last); a 404 without the run."""
    run = await existing_run(store, run_id)
    return {
        "run": run,
        "mem": await store.read(memory_view, run_id, step),
        "memory_home": home or memory_page_home(run_id),
    }
