"""Memory snapshots of a run: read them back and say what changed between steps.

The loop snapshots its memory (messages + scratch state) after every step;
``app.store.events`` projects each snapshot into ``memory_snapshots``, as
what changed since the step before (``app.store.snapshot_deltas``). Here we
list the steps, rebuild one with its predecessor, and diff the two: which
messages were added, changed or dropped, and which scratch values moved.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.store.snapshot_deltas import fold_run


def _snapshots_upto(db: Database, run_id: str, step: int | None = None) -> list[dict[str, Any]]:
    """The run's snapshots (up to ``step``), each rebuilt whole from the stored deltas."""
    rows = db.query(
        "select * from memory_snapshots where run_id = ? and step <= ? order by step",
        [run_id, 2**63 - 1 if step is None else step],
    )
    return fold_run(db, run_id, rows)


def list_steps(db: Database, run_id: str) -> list[dict[str, Any]]:
    """Every snapshot of a run without its payload: step, label, message count, seq, time."""
    rows = db.query(
        "select step, label, message_count, seq, at from memory_snapshots"
        " where run_id = ? order by step",
        [run_id],
    )
    return [dict(r) for r in rows]


def get_snapshot(db: Database, run_id: str, step: int) -> dict[str, Any] | None:
    snaps = _snapshots_upto(db, run_id, step)
    return snaps[-1] if snaps and snaps[-1]["step"] == step else None


def all_snapshots(db: Database, run_id: str) -> list[dict[str, Any]]:
    return _snapshots_upto(db, run_id)


def _as_list(value: Any) -> list[Any]:
    """A snapshot's messages as stored; a corrupt cell (not a JSON list) reads as none."""
    return value if isinstance(value, list) else []


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def diff_snapshots(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """What changed from ``before`` (None: an empty memory) to ``after``.

    Messages are compared by position: the loop only appends, so a changed or
    dropped message would be news worth showing, and it is shown as such.
    """
    old_msgs = _as_list((before or {}).get("messages"))
    new_msgs = _as_list(after.get("messages"))
    messages = []
    for i, message in enumerate(new_msgs):
        if i >= len(old_msgs):
            state = "added"
        elif old_msgs[i] != message:
            state = "changed"
        else:
            state = "same"
        messages.append({"index": i, "m": message, "state": state})
    removed = [{"index": i, "m": m} for i, m in enumerate(old_msgs[len(new_msgs) :], len(new_msgs))]
    old_scratch = _as_dict((before or {}).get("scratch"))
    new_scratch = _as_dict(after.get("scratch"))
    scratch = []
    for key in [*new_scratch, *(k for k in old_scratch if k not in new_scratch)]:
        if key not in old_scratch:
            state = "added" if before is not None else "same"
        elif key not in new_scratch:
            state = "removed"
        elif old_scratch[key] != new_scratch[key]:
            state = "changed"
        else:
            state = "same"
        scratch.append(
            {"key": key, "value": new_scratch.get(key), "old": old_scratch.get(key), "state": state}
        )
    return {
        "messages": messages,
        "removed": removed,
        "scratch": scratch,
        "added_count": sum(1 for m in messages if m["state"] == "added"),
        "changed_count": sum(1 for m in messages if m["state"] == "changed"),
        "scratch_changed": sum(1 for s in scratch if s["state"] != "same"),
    }


def memory_view(db: Database, run_id: str, step: int | None = None) -> dict[str, Any]:
    """Context of the memory viewer: the steps, the chosen one (default: the last), its diff;
    ``missing_step`` is a step asked for that the run does not have (the last is shown)."""
    steps = list_steps(db, run_id)
    if not steps:
        return {"run_id": run_id, "steps": [], "current": None, "diff": None, "missing_step": step}
    numbers = [s["step"] for s in steps]
    # A link to a step the run does not have shows the last one, and says so.
    missing = step if step is not None and step not in numbers else None
    chosen = numbers[-1] if step is None or missing is not None else step
    # One pass rebuilds the chosen step and the one before it from the stored deltas.
    upto = _snapshots_upto(db, run_id, chosen)
    current = upto[-1]
    position = numbers.index(chosen)
    previous = upto[-2] if position > 0 and len(upto) > 1 else None
    return {
        "run_id": run_id,
        "steps": steps,
        "current": current,
        "diff": diff_snapshots(previous, current),
        "prev_step": numbers[position - 1] if position > 0 else None,
        "next_step": numbers[position + 1] if position + 1 < len(numbers) else None,
        "missing_step": missing,
    }
