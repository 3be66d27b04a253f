"""The rollup tables (migration 0013) recomputed from scratch, to check the triggers against.

Each grain's tables are recomputed with plain ``GROUP BY`` queries over
``runs`` and ``evaluations``, written here independently of the migration,
and compared row by row (floating sums to 1e-9).
"""

from __future__ import annotations

import math
from typing import Any

_PERIOD = "(CAST(floor({0} / {1}.0) AS INTEGER) * {1})"


def recomputed(seconds: int) -> dict[str, str]:
    """Each rollup table of one grain, recomputed from scratch, in key order."""
    period = _PERIOD.format("started_at", seconds)
    return {
        "runs": f"""
        SELECT {period}, coalesce(model, ''), count(*), sum(status = 'succeeded'),
          sum(status IN ('failed', 'interrupted')),
          sum(status IN ('succeeded', 'failed', 'interrupted')), total(input_tokens),
          total(output_tokens), total(cost_usd), count(latency_ms), total(latency_ms),
          sum(status IN ('queued', 'running')), total(extra_cost_usd),
          sum(coalesce(cost_status, '') IN ('unpriced', 'partial')),
          sum(coalesce(usage_unknown_calls, 0) > 0)
        FROM runs GROUP BY 1, 2 ORDER BY 1, 2""",
        "session": f"""
        SELECT coalesce(session_id, ''), {period}, coalesce(model, ''),
          count(*), sum(status = 'succeeded'), sum(status IN ('failed', 'interrupted')),
          sum(status IN ('succeeded', 'failed', 'interrupted')), total(input_tokens),
          total(output_tokens), total(cost_usd), count(latency_ms), total(latency_ms)
        FROM runs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        "latency": f"""
        SELECT {period}, CASE WHEN latency_ms > 1e15 THEN 799
          WHEN latency_ms > 0 THEN CAST(floor(16 * log(2, latency_ms)) AS INTEGER)
          ELSE -1000 END, count(*), total(latency_ms)
        FROM runs WHERE latency_ms IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2""",
        "evals": f"""
        SELECT {_PERIOD.format("e.created_at", seconds)}, e.metric, coalesce(r.model, ''),
          coalesce(r.session_id, ''), count(*), count(e.passed), coalesce(sum(e.passed), 0),
          count(e.value), total(e.value)
        FROM evaluations e JOIN runs r ON r.id = e.run_id GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4""",
    }


KEYS = {
    "runs": "period, model",
    "session": "session, period, model",
    "latency": "period, bucket",
    "evals": "period, metric, model, session",
}
TABLES = [f"rollup_{t}_{g}" for t in KEYS for g in ("hour", "day")]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a or 0.0, b or 0.0, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


def assert_rollups_match(db: Any) -> None:
    """Every rollup table holds exactly the rows a recomputation from scratch gives."""
    for grain, seconds in (("hour", 3600), ("day", 86400)):
        for name, sql in recomputed(seconds).items():
            table = f"rollup_{name}_{grain}"
            expected = [tuple(r) for r in db.execute(sql).fetchall()]
            stored = [
                tuple(r)
                for r in db.execute(f"SELECT * FROM {table} ORDER BY {KEYS[name]}").fetchall()
            ]
            _assert_rows(table, stored, expected)


def _assert_rows(table: str, stored: list[tuple], expected: list[tuple]) -> None:
    assert len(stored) == len(expected), (table, stored, expected)
    for got, want in zip(stored, expected, strict=True):
        assert all(_close(g, w) for g, w in zip(got, want, strict=True)), (table, got, want)
