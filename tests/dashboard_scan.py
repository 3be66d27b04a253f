"""The dashboard's previous implementation, a scan of every run in the window: the oracle.

Kept verbatim (issue 15 replaced it with rollups) so that tests can check the
rollups give the same numbers on the same data, and ``bench/runs_list.py
--old-dashboard`` can print the old figure beside the new one.
"""

from __future__ import annotations

import math
from typing import Any

from sqlite_utils import Database

from app.dashboard.charts import RANGES, Chart, window
from app.store.statuses import ACTIVE, FAILED_LIKE, SUCCEEDED, TERMINAL, sql_list


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def totals(db: Database) -> dict[str, Any]:
    row = db.execute(
        f"""
        select count(*) as runs,
               cast(total(input_tokens) as integer) as input_tokens,
               cast(total(output_tokens) as integer) as output_tokens,
               total(cost_usd) as cost_usd,
               total(extra_cost_usd) as extra_cost_usd,
               sum(case when cost_status in ('unpriced', 'partial') then 1 else 0 end)
                   as unpriced_runs,
               sum(case when usage_unknown_calls > 0 then 1 else 0 end) as usage_unknown_runs,
               sum(case when status in {sql_list(FAILED_LIKE)} then 1 else 0 end) as failed,
               sum(case when status in {sql_list(ACTIVE)} then 1 else 0 end) as active,
               avg(latency_ms) as avg_latency_ms
        from runs
        """
    ).fetchone()
    return dict(row)


def session_models(db: Database, name: str) -> list[dict[str, Any]]:
    rows = db.query(
        f"""
        select model, count(*) as runs,
               sum(status in {sql_list(FAILED_LIKE)}) as failed,
               sum(status in {sql_list(TERMINAL)}) as finished,
               coalesce(sum(input_tokens + output_tokens), 0) as tokens,
               coalesce(sum(cost_usd), 0) as cost_usd,
               avg(latency_ms) as avg_latency_ms
        from runs where session_id = ? group by model order by runs desc
        """,
        [name],
    )
    return [dict(r) for r in rows]


def _run_filters(model: str | None, session: str | None, alias: str = "") -> tuple[str, list]:
    where, args = [], []
    if model:
        where.append(f"{alias}model = ?")
        args.append(model)
    if session:
        where.append(f"{alias}session_id = ?")
        args.append(session)
    return "".join(f" and {w}" for w in where), args


def dashboard_charts(
    db: Database, range_key: str | None = None, now: float | None = None
) -> dict[str, Any]:
    w = window(range_key, now)
    n = w.count
    runs, ok, failed = [0.0] * n, [0.0] * n, [0.0] * n
    tokens_in, tokens_out, cost = [0.0] * n, [0.0] * n, [0.0] * n
    usage_unknown = 0
    latencies: list[list[float]] = [[] for _ in range(n)]
    for r in db.query(
        "select started_at, status, input_tokens, output_tokens, cost_usd, latency_ms,"
        " usage_unknown_calls from runs where started_at >= ?",
        [w.start],
    ):
        i = w.index(r["started_at"])
        if i is None:
            continue
        runs[i] += 1
        ok[i] += r["status"] == SUCCEEDED
        failed[i] += r["status"] in FAILED_LIKE
        tokens_in[i] += r["input_tokens"] or 0
        tokens_out[i] += r["output_tokens"] or 0
        usage_unknown += bool(r["usage_unknown_calls"])
        cost[i] += r["cost_usd"] or 0.0
        if r["latency_ms"] is not None:
            latencies[i].append(r["latency_ms"])
    other = [runs[i] - ok[i] - failed[i] for i in range(n)]

    def seen(values: list[float]) -> list[float | None]:
        return [v if runs[i] else None for i, v in enumerate(values)]

    charts = [
        Chart("runs", "Runs", "bar", "count", w.labels)
        .add("succeeded", seen(ok), "ok")
        .add("failed", seen(failed), "bad")
        .add("running", seen(other), "warn"),
        Chart(
            "tokens",
            "Tokens",
            "bar",
            "count",
            w.labels,
            note=f"reported tokens only: {usage_unknown} run(s) had calls with no usage reported"
            if usage_unknown
            else "",
        )
        .add("input", seen(tokens_in))
        .add("output", seen(tokens_out)),
        Chart(
            "cost",
            "Cost (USD)",
            "bar",
            "usd",
            w.labels,
            note="priced calls only: unpriced ones are left out",
        ).add("cost", seen(cost), "s1"),
        Chart("latency", "Latency", "line", "ms", w.labels)
        .add("p50", [percentile(v, 0.5) for v in latencies])
        .add("p95", [percentile(v, 0.95) for v in latencies]),
    ]
    return {"window": w, "ranges": list(RANGES), "charts": [c.finish() for c in charts]}


def eval_charts(
    db: Database,
    range_key: str | None = None,
    model: str | None = None,
    session: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The old success-rate and metric series (raw lists, before Chart formatting)."""
    w = window(range_key, now)
    n = w.count
    filters, args = _run_filters(model, session)
    ended, ok = [0] * n, [0] * n
    for r in db.query(
        "select started_at, status from runs where started_at >= ?"
        f" and status in {sql_list(TERMINAL)}" + filters,
        [w.start, *args],
    ):
        i = w.index(r["started_at"])
        if i is not None:
            ended[i] += 1
            ok[i] += r["status"] == SUCCEEDED
    judged, passed = [0] * n, [0] * n
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    efilters, eargs = _run_filters(model, session, "r.")
    for e in db.query(
        "select e.created_at, e.metric, e.value, e.passed from evaluations e"
        " join runs r on r.id = e.run_id where e.created_at >= ?" + efilters,
        [w.start, *eargs],
    ):
        i = w.index(e["created_at"])
        if i is None:
            continue
        if e["passed"] is not None:
            judged[i] += 1
            passed[i] += e["passed"]
        if e["value"] is not None:
            sums.setdefault(e["metric"], [0.0] * n)[i] += e["value"]
            counts.setdefault(e["metric"], [0] * n)[i] += 1

    def rate(num: list[int], den: list[int]) -> list[float | None]:
        return [100.0 * a / b if b else None for a, b in zip(num, den, strict=False)]

    means = {
        metric: [s / c if c else None for s, c in zip(sums[metric], counts[metric], strict=False)]
        for metric in sorted(sums)
    }
    return {"runs": rate(ok, ended), "evals": rate(passed, judged), "means": means}


def breakdown(
    db: Database, by: str, range_key: str | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    column = {"model": "model", "session": "session_id"}[by]
    w = window(range_key, now)
    groups: dict[str, dict[str, Any]] = {}
    for r in db.query(
        f"select coalesce({column}, '') as g, count(*) as runs,"
        f" sum(status = '{SUCCEEDED}') as ok,"
        f" sum(status in {sql_list(TERMINAL)}) as ended,"
        " avg(latency_ms) as latency, sum(cost_usd) as cost"
        f" from runs where started_at >= ? group by g order by runs desc limit 50",
        [w.start],
    ):
        row = dict(r)
        row["success_rate"] = 100.0 * row["ok"] / row["ended"] if row["ended"] else None
        row.update(judged=0, passed=0, pass_rate=None, metrics={})
        groups[row["g"]] = row
    for e in db.query(
        f"select coalesce(r.{column}, '') as g, e.metric, avg(e.value) as mean, count(*) as n,"
        " count(e.passed) as judged, sum(e.passed) as passed from evaluations e"
        " join runs r on r.id = e.run_id where e.created_at >= ? group by g, e.metric",
        [w.start],
    ):
        group = groups.get(e["g"])
        if group is None:
            continue
        group["judged"] += e["judged"] or 0
        group["passed"] += e["passed"] or 0
        group["metrics"][e["metric"]] = {"mean": e["mean"], "n": e["n"]}
    for group in groups.values():
        if group["judged"]:
            group["pass_rate"] = 100.0 * group["passed"] / group["judged"]
    return list(groups.values())
