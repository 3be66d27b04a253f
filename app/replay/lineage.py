"""Where a run comes from and what came of it: its parent, replays, child agent runs."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from app.replay.diff_store import diffs_of_run, replay_diff_of

_BRIEF = (
    "id, status, model, provider, parent_run_id, parent_kind, prompt, response, error,"
    " started_at, latency_ms, input_tokens, output_tokens, cost_usd, cost_status, params"
)
MAX_CHILD_DEPTH = 4  # nesting shown on a page; deeper runs are one click away
MAX_LISTED = 100


def _brief(db: Database, where: str, args: list[Any]) -> list[dict[str, Any]]:
    rows = db.query(
        f"select {_BRIEF} from runs where {where} order by started_at, id limit {MAX_LISTED}", args
    )
    out = []
    for r in rows:
        row = dict(r)
        try:
            row["params"] = json.loads(row["params"]) if row["params"] else {}
        except (TypeError, json.JSONDecodeError):
            row["params"] = {}
        out.append(row)
    return out


def child_tree(db: Database, run_id: str, depth: int = 0) -> list[dict[str, Any]]:
    """Runs an agent started as tools (``ask_agent``), each with its own children."""
    children = _brief(db, "parent_run_id = ? and parent_kind = 'agent'", [run_id])
    for child in children:
        child["children"] = (
            child_tree(db, child["id"], depth + 1) if depth < MAX_CHILD_DEPTH else []
        )
        # What a helper cost with its own helpers: a parent's totals count only its own calls.
        own_tokens = (child["input_tokens"] or 0) + (child["output_tokens"] or 0)
        child["tree_tokens"] = own_tokens + sum(c["tree_tokens"] for c in child["children"])
        child["tree_cost_usd"] = (child["cost_usd"] or 0.0) + sum(
            c["tree_cost_usd"] for c in child["children"]
        )
    return children


def run_lineage(db: Database, run_id: str) -> dict[str, Any]:
    row = db.execute(
        "select parent_run_id, parent_kind from runs where id = ?", [run_id]
    ).fetchone()
    parent_id, parent_kind = (row[0], row[1]) if row else (None, None)
    parent = _brief(db, "id = ?", [parent_id])[0] if parent_id else None
    diffs = diffs_of_run(db, run_id)
    replays = _brief(db, "parent_run_id = ? and parent_kind = 'replay'", [run_id])
    made_by_replay = {
        d["run_b"]: d["id"] for d in diffs if d["kind"] == "replay" and d["run_a"] == run_id
    }
    for replay in replays:
        replay["diff_id"] = made_by_replay.get(replay["id"])
    replay_diff_id = replay_diff_of(db, run_id) if parent_kind == "replay" else None
    return {
        "parent": parent,
        "parent_kind": parent_kind if parent else None,
        "replay_diff_id": replay_diff_id,
        "replays": replays,
        "children": child_tree(db, run_id),
        "diffs": diffs,
        # Diffs not already linked above (as this replay's diff or in the replays table).
        "other_diffs": [
            d
            for d in diffs
            if d["id"] != (replay_diff_id or "") and d["id"] not in made_by_replay.values()
        ],
    }
