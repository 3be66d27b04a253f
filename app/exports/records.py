"""Runs and evaluations as plain records, the shared input of every export.

Evaluations belong to the evaluation feature; this module reads only its
stable columns (run_id, metric, value, label, comment, source, passed,
created_at) and copes with the table not existing yet, so exports work on a
database from before evaluations shipped. A human correction is an
evaluation with metric ``correction`` and the corrected answer as label.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlite_utils import Database

from app.core.text import replace_surrogates
from app.store.rows import maybe_json
from app.store.statuses import FAILED_LIKE, TERMINAL, sql_list

RUN_FIELDS = (
    "id",
    "session_id",
    "parent_run_id",
    "status",
    "source",
    "model",
    "provider",
    "params",
    "prompt",
    "response",
    "error",
    "started_at",
    "ended_at",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_status",
    "tool_calls",
    "tool_errors",
    "usage_unknown_calls",
)
EVALUATION_FIELDS = (
    "id",
    "run_id",
    "metric",
    "value",
    "label",
    "comment",
    "source",
    "passed",
    "created_at",
)
CORRECTION = "correction"
BATCH = 200


def has_table(db: Database, name: str) -> bool:
    return db.table(name).exists()


def _columns(db: Database, table: str) -> set[str]:
    return set(db.table(table).columns_dict)


def run_ids(db: Database, ids: list[str] | None = None) -> list[str]:
    """Finished runs, oldest first (or just ``ids``, in that order, those that exist)."""
    if ids is not None:
        found = (
            {
                r[0]
                for r in db.execute(
                    f"select id from runs where id in ({','.join('?' * len(ids))})", ids
                ).fetchall()
            }
            if ids
            else set()
        )
        return [i for i in ids if i in found]
    rows = db.execute(
        f"select id from runs where status in {sql_list(TERMINAL)} order by started_at, id"
    ).fetchall()
    return [r[0] for r in rows]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    # JSON may carry lone surrogates ("\\ud800"), which no Parquet or JSONL file can hold.
    return replace_surrogates(value) if isinstance(value, str) else json.dumps(value)


def tool_call_list(value: Any) -> list[dict[str, Any]]:
    """A ``messages.tool_calls`` cell as ``[{id, type, function: {name, arguments}}]``.

    Whatever was stored: a cell that is not a JSON list (corrupt text, an
    object, a number) gives no calls, an entry that is not an object is
    skipped, and ``arguments`` stays JSON text (its shape depends on the tool).
    """
    calls = maybe_json(value)
    if not isinstance(calls, list):
        return []
    out = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        out.append(
            {
                "id": _text(call.get("id")),
                "type": _text(call.get("type")) or "function",
                "function": {
                    "name": _text(function.get("name")),
                    "arguments": _text(arguments if arguments is not None else {}),
                },
            }
        )
    return out


def run_records(db: Database, ids: list[str]) -> Iterator[dict[str, Any]]:
    """One record per run: the run's fields, its messages and tool calls, nested."""
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        marks = ",".join("?" * len(chunk))
        runs = {
            r["id"]: dict(r)
            for r in db.execute(f"select * from runs where id in ({marks})", chunk).fetchall()
        }
        messages: dict[str, list[dict[str, Any]]] = {i: [] for i in chunk}
        for m in db.execute(
            f"select * from messages where run_id in ({marks}) order by run_id, seq", chunk
        ).fetchall():
            messages[m["run_id"]].append(
                {
                    "role": m["role"],
                    "content": m["content"] or "",
                    "tool_calls": json.dumps(maybe_json(m["tool_calls"]) or []),
                    "tool_call_id": m["tool_call_id"],
                    "name": m["name"],
                }
            )
        calls: dict[str, list[dict[str, Any]]] = {i: [] for i in chunk}
        for t in db.execute(
            f"select * from tool_calls where run_id in ({marks}) order by run_id, seq", chunk
        ).fetchall():
            calls[t["run_id"]].append(
                {
                    "call_id": t["call_id"],
                    "name": t["name"],
                    "arguments": t["arguments"] or "{}",
                    "result": t["result"],
                    "error": t["error"],
                    "status": t["status"],
                    "latency_ms": t["latency_ms"],
                    "cost_usd": t["cost_usd"],
                }
            )
        for run_id in chunk:
            run = runs.get(run_id)
            if run is None:
                continue
            record = {k: run.get(k) for k in RUN_FIELDS}
            record["params"] = run.get("params") or "{}"
            record["extra_cost_usd"] = run.get("extra_cost_usd") or 0.0
            record["usage_unknown_calls"] = run.get("usage_unknown_calls") or 0
            if record["usage_unknown_calls"]:
                # Some calls reported no usage: the run's token totals are unknown, not a sum.
                record["input_tokens"] = record["output_tokens"] = None
            record["messages"] = messages[run_id]
            record["tool_call_details"] = calls[run_id]
            yield record


def evaluation_records(db: Database, ids: list[str] | None = None) -> list[dict[str, Any]]:
    if not has_table(db, "evaluations"):
        return []
    have = _columns(db, "evaluations")
    fields = [f for f in EVALUATION_FIELDS if f in have]
    where, args = "", []
    if ids is not None:
        if not ids:
            return []
        where, args = f" where run_id in ({','.join('?' * len(ids))})", list(ids)
    rows = db.execute(
        f"select {', '.join(fields)} from evaluations{where} order by created_at, id", args
    ).fetchall()
    return [{f: (dict(r).get(f)) for f in EVALUATION_FIELDS} for r in rows]


def corrections(db: Database) -> dict[str, str]:
    """run id → the latest human-corrected answer."""
    out: dict[str, str] = {}
    for e in evaluation_records(db):
        if e["metric"] == CORRECTION and e["label"]:
            out[e["run_id"]] = e["label"]
    return out


def low_scored(db: Database, below: float | None) -> set[str]:
    """Runs judged failing (``passed = 0``) or with a value under ``below`` (when given)."""
    low = set()
    for e in evaluation_records(db):
        if e["metric"] == CORRECTION:
            continue
        if e["passed"] == 0 or (
            below is not None and e["value"] is not None and e["value"] < below
        ):
            low.add(e["run_id"])
    return low


def failed_runs(db: Database) -> set[str]:
    """Runs that count as failures (interrupted ones too, as on every page)."""
    rows = db.execute(f"select id from runs where status in {sql_list(FAILED_LIKE)}").fetchall()
    return {r[0] for r in rows}
