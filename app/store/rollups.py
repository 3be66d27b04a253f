"""Read the rollups (migration 0013) for the dashboards, the evals page and the sessions.

Each function answers what a scan of ``runs`` or ``evaluations`` used to
answer, from tables whose size follows periods × models (× sessions), not
runs. A window is given as ``start`` (epoch seconds, a whole hour), bucket
``size`` (a multiple of 3600) and bucket ``count``; rows come back per bucket
index ``i`` (0 … count-1). Windows made of whole UTC days read the per-day
tables, others the per-hour ones.

Latency percentiles come from a histogram whose buckets are 2^(1/16) apart,
with the sum of the latencies in each. A bucket's latencies are read as their
mean, which lies in the bucket as the true one does, so a percentile is within
2^(1/16) - 1 ≈ 4.5 % of the exact one, and exact when a bucket holds one value
(a single run, say). The scan interpolated between the two nearest
latencies; so does this, between the two nearest buckets' means.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

GROUPS = {"model": "model", "session": "session"}


def _grain(start: float, size: int) -> str:
    """``day`` when the window is made of whole UTC days, else ``hour``."""
    return "day" if int(start) % 86400 == 0 and int(size) % 86400 == 0 else "hour"


def _bucket_index(size: int) -> str:
    return f"CAST((period - :start) / {int(size)} AS INTEGER)"


def _params(start: float, size: int, count: int, **more: Any) -> dict[str, Any]:
    return {"start": int(start), "end": int(start) + int(size) * int(count), **more}


def total_runs(db: Database) -> int:
    """Every run, counted exactly: the triggers add each run to one row of the day
    rollup and take it away when it is deleted (``count(*)`` walks an index of every
    run: 60-80 ms at 1M runs on PostgreSQL)."""
    return int(db.execute("SELECT coalesce(sum(runs), 0) FROM rollup_runs_day").fetchone()[0])


def kpis(db: Database) -> dict[str, Any]:
    """All-time KPIs: runs, tokens, cost, unpriced and usage-unknown runs, failed, active."""
    row = db.execute(
        """
        SELECT coalesce(sum(runs), 0) AS runs,
               -- Token sums are REAL in the rollup; the cast saturates at 64 bits.
               CAST(total(input_tokens) AS INTEGER) AS input_tokens,
               CAST(total(output_tokens) AS INTEGER) AS output_tokens,
               total(cost_usd) AS cost_usd, total(extra_cost_usd) AS extra_cost_usd,
               sum(unpriced) AS unpriced_runs, sum(usage_unknown) AS usage_unknown_runs,
               sum(failed) AS failed, sum(active) AS active,
               total(latency_sum) / nullif(sum(latency_n), 0) AS avg_latency_ms
        FROM rollup_runs_day
        """
    ).fetchone()
    return dict(row)


def run_buckets(
    db: Database,
    start: float,
    size: int,
    count: int,
    model: str | None = None,
    session: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Per bucket: runs, succeeded, failed, ended, tokens, cost, usage-unknown runs."""
    args = _params(start, size, count, model=model, session=session)
    grain = _grain(start, size)
    if session is not None:
        # Per session: the session table, by its (session, period) key.
        sql = f"""
            SELECT {_bucket_index(size)} AS i, sum(runs) AS runs, sum(succeeded) AS succeeded,
                   sum(failed) AS failed, sum(ended) AS ended,
                   total(input_tokens) AS input_tokens, total(output_tokens) AS output_tokens,
                   total(cost_usd) AS cost_usd, 0 AS usage_unknown
            FROM rollup_session_{grain}
            WHERE session = :session AND period >= :start AND period < :end
              {"AND model = :model" if model is not None else ""}
            GROUP BY i"""
    else:
        sql = f"""
            SELECT {_bucket_index(size)} AS i, sum(runs) AS runs, sum(succeeded) AS succeeded,
                   sum(failed) AS failed, sum(ended) AS ended,
                   total(input_tokens) AS input_tokens, total(output_tokens) AS output_tokens,
                   total(cost_usd) AS cost_usd, sum(usage_unknown) AS usage_unknown
            FROM rollup_runs_{grain}
            WHERE period >= :start AND period < :end
              {"AND model = :model" if model is not None else ""}
            GROUP BY i"""
    return {r["i"]: dict(r) for r in db.execute(sql, args) if r["runs"]}


Histogram = Iterable[tuple[int, int, float]]  # (bucket, runs, sum of their latencies)


def histogram_percentile(histogram: Histogram, q: float) -> float | None:
    """Percentile ``q`` (0..1) of a latency histogram, interpolated as the scan did."""
    ordered = sorted((b, n, total) for b, n, total in histogram if n > 0)
    count = sum(n for _, n, _ in ordered)
    if not count:
        return None
    pos = (count - 1) * q
    low, high = int(pos), min(int(pos) + 1, count - 1)

    def at(rank: int) -> float:
        seen = 0
        for _, n, total in ordered:
            seen += n
            if rank < seen:
                return total / n
        return ordered[-1][2] / ordered[-1][1]

    v_low, v_high = at(low), at(high)
    return v_low + (v_high - v_low) * (pos - low)


def latency_histograms(
    db: Database, start: float, size: int, count: int
) -> dict[int, list[tuple[int, int, float]]]:
    """Per bucket index: the latency histogram [(bucket, runs, sum)] of the runs started in it."""
    out: dict[int, list[tuple[int, int, float]]] = {}
    for r in db.execute(
        f"""SELECT {_bucket_index(size)} AS i, bucket, sum(runs) AS n, total(latency_sum) AS s
            FROM rollup_latency_{_grain(start, size)}
            WHERE period >= :start AND period < :end GROUP BY i, bucket""",
        _params(start, size, count),
    ):
        out.setdefault(r["i"], []).append((r["bucket"], r["n"], r["s"]))
    return out


def _eval_filters(model: str | None, session: str | None) -> str:
    return ("AND model = :model " if model is not None else "") + (
        "AND session = :session " if session is not None else ""
    )


def eval_buckets(
    db: Database,
    start: float,
    size: int,
    count: int,
    model: str | None = None,
    session: str | None = None,
) -> list[dict[str, Any]]:
    """Per bucket and metric: evaluations, judged, passed, value count and sum."""
    rows = db.execute(
        f"""SELECT {_bucket_index(size)} AS i, metric, sum(n) AS n, sum(judged) AS judged,
                   sum(passed) AS passed, sum(value_n) AS value_n, total(value_sum) AS value_sum
            FROM rollup_evals_{_grain(start, size)} WHERE period >= :start AND period < :end
            {_eval_filters(model, session)} GROUP BY i, metric""",
        _params(start, size, count, model=model, session=session),
    )
    return [dict(r) for r in rows]


def run_groups(db: Database, by: str, start: float, size: int, count: int) -> list[dict[str, Any]]:
    """Per model or session in the window: runs, ok, ended, mean latency, cost (top 50)."""
    table = f"rollup_{'runs' if by == 'model' else 'session'}_{_grain(start, size)}"
    column = GROUPS[by]
    rows = db.execute(
        f"""SELECT {column} AS g, sum(runs) AS runs, sum(succeeded) AS ok, sum(ended) AS ended,
                   total(latency_sum) / nullif(sum(latency_n), 0) AS latency,
                   total(cost_usd) AS cost
            FROM {table} WHERE period >= :start AND period < :end
            GROUP BY g HAVING sum(runs) > 0 ORDER BY runs DESC, g LIMIT 50""",
        _params(start, size, count),
    )
    return [dict(r) for r in rows]


def eval_groups(db: Database, by: str, start: float, size: int, count: int) -> list[dict[str, Any]]:
    """Per model or session and metric in the window: mean, n, judged, passed."""
    column = GROUPS[by]
    rows = db.execute(
        f"""SELECT {column} AS g, metric, total(value_sum) / nullif(sum(value_n), 0) AS mean,
                   sum(n) AS n, sum(judged) AS judged, sum(passed) AS passed
            FROM rollup_evals_{_grain(start, size)} WHERE period >= :start AND period < :end
            GROUP BY g, metric HAVING sum(n) > 0""",
        _params(start, size, count),
    )
    return [dict(r) for r in rows]


def session_models(db: Database, name: str) -> list[dict[str, Any]]:
    """One session's runs per model, all time (model None where runs had none)."""
    rows = db.execute(
        """SELECT nullif(model, '') AS model, sum(runs) AS runs, sum(failed) AS failed,
                  sum(ended) AS finished,
                  CAST(total(input_tokens) + total(output_tokens) AS INTEGER) AS tokens,
                  total(cost_usd) AS cost_usd,
                  total(latency_sum) / nullif(sum(latency_n), 0) AS avg_latency_ms
           FROM rollup_session_day WHERE session = ?
           GROUP BY model HAVING sum(runs) > 0 ORDER BY runs DESC""",
        [name],
    )
    return [dict(r) for r in rows]
