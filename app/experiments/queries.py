"""Store functions of experiments: create, progress, read, summarise, compare.

Running totals (done, failed, passed, scored, cost) live on the experiment
row and move with each finished item, so the progress bar and the list never
aggregate; per-metric summaries read ``evaluations`` by experiment id.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlite_utils import Database

from app.experiments.change import item_change
from app.store.processes import INTERRUPTED_ERROR, LEASE_S, orphaned_jobs, with_owner
from app.store.rows import decode_json
from app.store.statuses import SUCCEEDED

FINISHED = ("succeeded", "failed", "interrupted")


def _decode(row: Any) -> dict[str, Any]:
    return decode_json(row, "config", "evaluators")


def create_experiment(
    db: Database, row: dict[str, Any], owner: str | None = None
) -> dict[str, Any]:
    """The experiment and one pending item per dataset item, in one transaction.

    ``owner``: the serving process that runs it (``app.store.processes``).
    """
    row = with_owner(row, owner)
    items = list(
        db.query(
            "select id, idx from dataset_items where dataset_id = ? order by idx",
            [row["dataset_id"]],
        )
    )
    name = row.get("name")
    if not name:
        dataset = db.execute(
            "select name from datasets where id = ?", [row["dataset_id"]]
        ).fetchone()
        name = f"{dataset[0]} · {row['config']['model']}"
    experiment_id = (
        db.table("experiments")
        .insert(
            {
                **row,
                "name": name,
                "status": "queued",
                "config": json.dumps(row["config"]),
                "evaluators": json.dumps(row["evaluators"]),
                "total": len(items),
                "created_at": time.time(),
            }
        )
        .last_pk
    )
    assert experiment_id is not None  # the row was just inserted
    db.table("experiment_items").insert_all(
        {"experiment_id": experiment_id, "item_id": i["id"], "idx": i["idx"], "status": "pending"}
        for i in items
    )
    experiment = get_experiment(db, experiment_id)
    assert experiment is not None
    return experiment


def get_experiment(db: Database, experiment_id: int) -> dict[str, Any] | None:
    rows = list(
        db.query(
            "select e.*, d.name as dataset_name from experiments e"
            " join datasets d on d.id = e.dataset_id where e.id = ?",
            [experiment_id],
        )
    )
    return _decode(rows[0]) if rows else None


def list_experiments(
    db: Database, dataset_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    where, args = ("where e.dataset_id = ?", [dataset_id]) if dataset_id else ("", [])
    rows = db.query(
        "select e.*, d.name as dataset_name from experiments e join datasets d on d.id = e.dataset_id"
        f" {where} order by e.created_at desc, e.id desc limit ?",
        [*args, limit],
    )
    return [_decode(r) for r in rows]


def pending_items(db: Database, experiment_id: int) -> list[dict[str, Any]]:
    rows = db.query(
        "select x.id, x.idx, d.input, d.expected from experiment_items x"
        " join dataset_items d on d.id = x.item_id"
        " where x.experiment_id = ? and x.status = 'pending' order by x.idx",
        [experiment_id],
    )
    return [dict(r) for r in rows]


def start_item(db: Database, item_id: int, run_id: str) -> None:
    db.execute(
        "update experiment_items set status = 'running', run_id = ? where id = ?", [run_id, item_id]
    )


def finish_item(
    db: Database,
    experiment_id: int,
    item_id: int,
    run: dict[str, Any] | None,
    passed: bool | None,
    error: str | None = None,
) -> None:
    """Record an item's outcome and move the experiment's running totals."""
    ok = run is not None and run.get("status") == SUCCEEDED
    cost = float((run or {}).get("cost_usd") or 0.0)
    db.execute(
        "update experiment_items set status = ?, output = ?, error = ?, latency_ms = ?,"
        " cost_usd = ?, passed = ? where id = ?",
        [
            "succeeded" if ok else "failed",
            (run or {}).get("response"),
            error or (run or {}).get("error"),
            (run or {}).get("latency_ms"),
            cost,
            None if passed is None else int(passed),
            item_id,
        ],
    )
    db.execute(
        "update experiments set done = done + 1, failed = failed + ?, passed = passed + ?,"
        " scored = scored + ?, cost_usd = cost_usd + ? where id = ?",
        [0 if ok else 1, 1 if passed else 0, 0 if passed is None else 1, cost, experiment_id],
    )


def finish_experiment(
    db: Database, experiment_id: int, status: str, error: str | None = None
) -> None:
    if status == "running":
        db.execute(
            "update experiments set status = 'running', started_at = ? where id = ?",
            [time.time(), experiment_id],
        )
        return
    db.execute(
        "update experiments set status = ?, error = ?, finished_at = ? where id = ?",
        [status, error, time.time(), experiment_id],
    )
    if status == "interrupted":
        # Items that never got an outcome say so, rather than "running" forever.
        db.execute(
            "update experiment_items set status = 'failed', error = 'interrupted'"
            " where experiment_id = ? and status in ('pending', 'running')",
            [experiment_id],
        )


def interrupt_unfinished_experiments(
    db: Database, now: float | None = None, lease_s: float = LEASE_S, unowned: bool = True
) -> list[int]:
    """Experiments a stop left queued or running are marked interrupted.

    Only those whose server is gone (``app.store.processes.orphaned_jobs``):
    at start-up, and by every replica's periodic sweep.
    """
    ids = orphaned_jobs(db, "experiments", now or time.time(), lease_s, unowned)
    for experiment_id in ids:
        finish_experiment(db, experiment_id, "interrupted", INTERRUPTED_ERROR)
    return ids


def experiment_items(db: Database, experiment_id: int, item_id: int | None = None) -> list[dict]:
    """Items with their input, expected output, run status and evaluations."""
    sql = (
        "select x.*, d.input, d.expected, r.status as run_status from experiment_items x"
        " join dataset_items d on d.id = x.item_id left join runs r on r.id = x.run_id"
        " where x.experiment_id = ?"
    )
    args: list[Any] = [experiment_id]
    if item_id is not None:
        sql += " and x.id = ?"
        args.append(item_id)
    items = [dict(r) for r in db.query(sql + " order by x.idx", args)]
    by_run: dict[str, list[dict[str, Any]]] = {}
    for e in db.query(
        "select run_id, metric, value, label, passed, comment from evaluations"
        " where experiment_id = ? order by id",
        [experiment_id],
    ):
        by_run.setdefault(e["run_id"], []).append(dict(e))
    for item in items:
        item["evaluations"] = by_run.get(item["run_id"], []) if item["run_id"] else []
    return items


def metric_summary(db: Database, experiment_id: int) -> list[dict[str, Any]]:
    """Per metric: how many scored, the mean value, and the pass rate where there is a verdict."""
    rows = db.query(
        "select metric, count(*) as n, avg(value) as mean, sum(passed) as passed,"
        " count(passed) as judged from evaluations where experiment_id = ?"
        " group by metric order by metric",
        [experiment_id],
    )
    out = []
    for r in rows:
        row = dict(r)
        row["pass_rate"] = (row["passed"] / row["judged"]) if row["judged"] else None
        out.append(row)
    return out


def compare_experiments(db: Database, a_id: int, b_id: int) -> dict[str, Any]:
    """Two experiments over the same dataset, item by item, with per-metric summaries."""
    a, b = get_experiment(db, a_id), get_experiment(db, b_id)
    if a is None or b is None:
        raise LookupError(f"experiment {a_id if a is None else b_id} not found")
    if a["dataset_id"] != b["dataset_id"]:
        raise ValueError("these experiments ran different datasets; compare runs of one dataset")
    items_a = {i["item_id"]: i for i in experiment_items(db, a_id)}
    items_b = {i["item_id"]: i for i in experiment_items(db, b_id)}
    # Each item's row from A, else from B: an item may be missing on one side.
    both = {**items_b, **items_a}
    rows = []
    for item_id in sorted(both, key=lambda k: both[k]["idx"]):
        left, right = items_a.get(item_id), items_b.get(item_id)
        base = both[item_id]
        change, flips = item_change(left, right)
        rows.append(
            {
                "idx": base["idx"],
                "input": base["input"],
                "expected": base["expected"],
                "a": left,
                "b": right,
                "change": change,
                "flips": flips,
            }
        )
    summary_a = {m["metric"]: m for m in metric_summary(db, a_id)}
    summary_b = {m["metric"]: m for m in metric_summary(db, b_id)}
    metrics = sorted(set(summary_a) | set(summary_b))
    return {
        "a": a,
        "b": b,
        "rows": rows,
        "metrics": [{"metric": m, "a": summary_a.get(m), "b": summary_b.get(m)} for m in metrics],
    }
