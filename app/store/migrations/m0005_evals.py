"""Evaluation: memory snapshots, evaluations, datasets and experiments.

``evaluations`` is read by other features (fine-tune exports pick failed or
corrected runs): its core columns run_id, metric, value, label, comment,
source, created_at stay stable. A human-corrected answer is an evaluation
with metric ``correction`` and the corrected text as its label.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0005_evals")
def evals(db: Database) -> None:
    db.table("memory_snapshots").create(
        {
            "id": int,
            "run_id": str,
            "seq": int,  # the event's seq, to line a snapshot up with the thread
            "step": int,
            "label": str,
            "messages": str,  # JSON list of message dicts, as the model would get them
            "scratch": str,  # JSON object: round, tokens, pending tool calls, …
            "message_count": int,
            "at": float,
        },
        pk="id",
        not_null={"run_id", "step"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("memory_snapshots").create_index(["run_id", "step"], unique=True)

    db.table("datasets").create(
        {
            "id": int,
            "name": str,
            "description": str,
            "source": str,  # csv | jsonl | runs | api
            "item_count": int,
            "created_by": str,
            "created_at": float,
        },
        pk="id",
        not_null={"name", "created_at"},
        defaults={"item_count": 0},
    )
    db.table("datasets").create_index(["created_at"])
    db.table("dataset_items").create(
        {
            "id": int,
            "dataset_id": int,
            "idx": int,
            "input": str,
            "expected": str,
            "metadata": str,  # JSON: extra CSV columns / JSONL keys, source run id
        },
        pk="id",
        not_null={"dataset_id", "idx", "input"},
        foreign_keys=[("dataset_id", "datasets", "id")],
    )
    db.table("dataset_items").create_index(["dataset_id", "idx"], unique=True)

    db.table("experiments").create(
        {
            "id": int,
            "name": str,
            "dataset_id": int,
            "status": str,  # queued | running | succeeded | failed | interrupted
            "config": str,  # JSON: model, temperature, system_prompt, tools, max_tokens, max_rounds
            "evaluators": str,  # JSON list of {"name", "params"}
            "concurrency": int,
            # Running totals so list and progress never aggregate items.
            "total": int,
            "done": int,
            "failed": int,
            "passed": int,
            "scored": int,
            "cost_usd": float,
            "error": str,
            "created_by": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={"dataset_id", "status", "created_at"},
        defaults={"done": 0, "failed": 0, "passed": 0, "scored": 0, "cost_usd": 0.0, "total": 0},
        foreign_keys=[("dataset_id", "datasets", "id")],
    )
    db.table("experiments").create_index(["created_at"])
    db.table("experiments").create_index(["dataset_id"])
    db.table("experiment_items").create(
        {
            "id": int,
            "experiment_id": int,
            "item_id": int,
            "idx": int,
            "run_id": str,
            "status": str,  # pending | running | succeeded | failed
            "output": str,
            "error": str,
            "latency_ms": float,
            "cost_usd": float,
            "passed": int,  # 1 when every pass/fail evaluator passed; null if none judged
        },
        pk="id",
        not_null={"experiment_id", "item_id", "idx", "status"},
        foreign_keys=[("experiment_id", "experiments", "id"), ("item_id", "dataset_items", "id")],
    )
    db.table("experiment_items").create_index(["experiment_id", "idx"], unique=True)

    db.table("evaluations").create(
        {
            "id": int,
            "run_id": str,
            "metric": str,  # thumbs | score | correction | exact_match | llm_judge | …
            "value": float,
            "label": str,
            "comment": str,
            "source": str,  # human | api | heuristic | llm-judge
            "passed": int,  # 1 pass, 0 fail, null when the metric has no verdict
            "created_by": str,
            "created_at": float,
            "experiment_id": int,
            "details": str,  # JSON: evaluator params, the judge's raw reply, …
        },
        pk="id",
        not_null={"run_id", "metric", "source", "created_at"},
        foreign_keys=[("run_id", "runs", "id"), ("experiment_id", "experiments", "id")],
    )
    db.table("evaluations").create_index(["run_id", "created_at"])
    db.table("evaluations").create_index(["created_at"])
    db.table("evaluations").create_index(["metric", "created_at"])
    db.table("evaluations").create_index(["experiment_id", "run_id"])
