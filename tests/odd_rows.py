"""Odd rows written straight into the store, for tests that render whatever is stored.

As an old version, an OTLP instrumentation or a hand-edited database could
leave them: optional fields missing or empty, 1 MB texts, NUL, lone
surrogates inside JSON, 64-bit extremes, infinities and NaN.
"""

from __future__ import annotations

import json
import time
from typing import Any

from app.store import Store
from app.store.runs import create_run

BIG = "x" * 1_000_000
I64_MAX = 9223372036854775807
I64_MIN = -9223372036854775808
SURROGATE = '"odd \\ud800 text \\udfff"'  # JSON text that decodes to lone surrogates
NUL = "a\x00b"
# Unclosed brackets: Python-Markdown's link search is quadratic on them (17 s for these 20k).
SOUP = "[(!a" * 5000


def _sql(store: Store, statement: str, params: list[Any]) -> None:
    store.write_sync(lambda db: db.execute(statement, params))


def _ensure_label_column(store: Store) -> None:
    """``runs.label`` (the root span's name) comes with the OTLP migration; add it if not yet."""

    def add(db: Any) -> None:
        if "label" not in db["runs"].columns_dict:
            db["runs"].add_column("label", str)

    store.write_sync(add)


def seed_odd_data(store: Store) -> dict[str, str]:
    """One run of each odd kind, with messages, tool calls, spans, evals, memory and events."""
    _ensure_label_column(store)
    now = time.time()
    runs = {
        # What opentelemetry-instrumentation-openai-v2 sends: no prompt, a root span name.
        "otlp": {"prompt": None, "label": "chat gpt-4o-mini", "source": "otlp"},
        "bare": {"prompt": None, "model": None, "provider": None, "params": None},
        "empty": {"prompt": "", "response": "", "model": "", "session_id": "", "params": "{}"},
        "huge": {
            "prompt": BIG,
            "response": BIG + NUL,
            "model": "m" * 10_000 + NUL,
            "session_id": "s" * 5_000 + NUL,
            "error": BIG,
            "params": '{"temperature": NaN, "tools": "' + BIG + '", "max_tokens": 1e999}',
        },
        "odd": {
            "prompt": NUL + " <script>alert(1)</script>",
            "response": "**bold** " + NUL,
            "model": NUL,
            "session_id": "odd session",
            "params": '{"temperature": "hot", "system_prompt": [1, {"a": null}]}',
            "error": NUL,
        },
        "soup": {"prompt": SOUP, "response": SOUP, "error": SOUP},
    }
    ids = {}
    for n, (kind, fields) in enumerate(runs.items()):
        run_id = f"{kind}-run-0000-0000-{n:012d}"
        ids[kind] = run_id
        row = {"id": run_id, "status": "succeeded", "started_at": now - 100 + n, **fields}
        params = row.pop("params", None)
        store.write_sync(create_run, row)
        _sql(store, "update runs set params = ? where id = ?", [params, run_id])
    # Numbers: 64-bit extremes, infinities (NaN is stored as NULL by SQLite), nonsense dates.
    _sql(
        store,
        """update runs set input_tokens = ?, output_tokens = ?, cost_usd = ?, latency_ms = ?,
           ended_at = ?, tool_calls = ?, tool_errors = ?, last_seq = ?, cost_status = 'priced'
           where id = ?""",
        [I64_MAX, I64_MIN, 1e308, 1e300, -1e300, I64_MAX, I64_MIN, 3, ids["huge"]],
    )
    _sql(
        store,
        """update runs set input_tokens = NULL, output_tokens = NULL, cost_usd = NULL,
           latency_ms = ?, started_at = ?, ended_at = NULL, tool_calls = NULL, tool_errors = NULL,
           cost_status = NULL, last_seq = NULL where id = ?""",
        [float("nan"), 1e300, ids["bare"]],
    )
    _sql(
        store,
        "update runs set cost_usd = ?, latency_ms = ?, cost_status = 'partial' where id = ?",
        [float("-inf"), -5.0, ids["odd"]],
    )
    store.write_sync(
        lambda db: db["events"].insert_all(
            [
                {"run_id": ids["huge"], "seq": 1, "type": "run_started", "payload": "{}"},
                {
                    "run_id": ids["huge"],
                    "seq": 2,
                    "type": "message",
                    "payload": json.dumps({"role": None, "content": BIG + NUL, "tool_calls": 5}),
                },
                {"run_id": ids["huge"], "seq": 3, "type": "run_finished", "payload": "[]"},
            ]
        )
    )
    _seed_experiment(store, ids["odd"])
    _seed_thread(store, ids["huge"], '"plain"')
    _seed_thread(store, ids["bare"], "null")
    _seed_thread(store, ids["odd"], SURROGATE)
    _seed_thread(store, ids["soup"], '"' + SOUP + '"')
    return ids


def _seed_thread(store: Store, run_id: str, odd_json: str) -> None:
    """A thread whose JSON columns hold ``odd_json`` (e.g. lone surrogates) in places."""

    def write(db: Any) -> None:
        db["messages"].insert_all(
            [
                {"run_id": run_id, "seq": 1, "role": "user", "content": BIG},
                {"run_id": run_id, "seq": 2, "role": None, "content": None},
                {
                    "run_id": run_id,
                    "seq": None,
                    "role": "assistant",
                    "content": NUL,
                    "tool_calls": '[{"function": {"name": ' + odd_json + "}}, 5, null]",
                },
                {"run_id": run_id, "seq": 4, "role": "assistant", "tool_calls": '{"a": 1}'},
                {"run_id": run_id, "seq": 5, "role": "tool", "content": None},
            ]
        )
        db["tool_calls"].insert_all(
            [
                {
                    "run_id": run_id,
                    "call_id": "c1",
                    "seq": 3,
                    "name": None,
                    "arguments": "not json",
                    "result": BIG,
                    "status": "ok",
                    "latency_ms": float("inf"),
                    "cost_lines": '[1, "x", {"characters": "many", "usd": "?"}]',
                },
                {
                    "run_id": run_id,
                    "call_id": "c2",
                    "seq": 6,
                    "name": NUL,
                    "arguments": '{"q": ' + odd_json + "}",
                    "error": NUL,
                    "status": None,
                    "cost_lines": '{"characters": ' + str(I64_MAX) + "}",
                },
            ]
        )
        db["spans"].insert_all(
            [
                {"run_id": run_id, "span_id": None, "name": None, "attributes": None},
                {
                    "run_id": run_id,
                    "span_id": "s" * 1000,
                    "kind": "weird",
                    "name": NUL,
                    "start_at": 1e300,
                    "input_tokens": I64_MAX,
                    "cost_usd": float("inf"),
                    "attributes": '{"k": ' + odd_json + ', "n": NaN, "big": ' + str(I64_MAX) + "}",
                },
            ]
        )
        db["evaluations"].insert_all(
            [
                {
                    "run_id": run_id,
                    "metric": "score",
                    "value": float("inf"),
                    "label": BIG,
                    "comment": None,
                    "source": "api",
                    "passed": 7,
                    "created_at": 1e300,
                },
                {
                    "run_id": run_id,
                    "metric": "thumbs",
                    "value": None,
                    "label": None,
                    "comment": NUL,
                    "source": "human",
                    "passed": None,
                    "created_at": -1,
                },
                {
                    "run_id": run_id,
                    "metric": "correction",
                    "label": None,
                    "source": "human",
                    "created_at": 0,
                },
                {
                    "run_id": run_id,
                    "metric": NUL,
                    "value": -1e308,
                    "label": "",
                    "comment": BIG,
                    "source": "heuristic",
                    "created_by": NUL,
                    "created_at": time.time(),
                },
            ]
        )
        db["memory_snapshots"].insert_all(
            [
                {"run_id": run_id, "step": 1, "label": None, "messages": "not json"},
                {
                    "run_id": run_id,
                    "step": 2,
                    "label": NUL,
                    "messages": '[{"role": null, "content": ' + odd_json + "}, 3]",
                    "scratch": '{"pending": [1, 2], "tokens": ' + str(I64_MAX) + "}",
                    "message_count": I64_MAX,
                    "at": float("inf"),
                },
                {
                    "run_id": run_id,
                    "step": 3,
                    "label": "",
                    "messages": json.dumps([{"role": "user", "content": BIG}]),
                    "scratch": '{"round": ' + odd_json + ', "n": NaN}',
                },
            ]
        )

    store.write_sync(write)


def _seed_experiment(store: Store, run_id: str) -> None:
    """A dataset and two experiments over it, with odd items, outputs and totals."""

    def write(db: Any) -> None:
        dataset = db["datasets"].insert({"name": NUL, "created_at": 1e300}).last_pk
        items = [
            {"dataset_id": dataset, "idx": 0, "input": BIG, "expected": None},
            {
                "dataset_id": dataset,
                "idx": 1,
                "input": "",
                "expected": NUL,
                "metadata": '{"k": [null]}',
            },
        ]
        db["dataset_items"].insert_all(items)
        item_ids = [r["id"] for r in db.query("select id from dataset_items order by idx")]
        for n, config in enumerate(['{"model": null}', "not json"]):
            experiment = (
                db["experiments"]
                .insert(
                    {
                        "name": None if n else BIG,
                        "dataset_id": dataset,
                        "status": "running" if n else "odd-status",
                        "config": config,
                        "evaluators": "[5, null]",
                        "total": 0 if n else 2,
                        "done": I64_MAX,
                        "passed": I64_MAX,
                        "scored": 3,
                        "cost_usd": None,
                        "created_at": -1,
                    }
                )
                .last_pk
            )
            db["experiment_items"].insert_all(
                {
                    "experiment_id": experiment,
                    "item_id": item_id,
                    "idx": idx,
                    "run_id": run_id if idx else None,
                    "status": "succeeded" if idx else NUL,
                    "output": BIG if idx else None,
                    "error": None if idx else NUL,
                    "latency_ms": 1e300,
                }
                for idx, item_id in enumerate(item_ids)
            )

    store.write_sync(write)
