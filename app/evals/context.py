"""What the /evals page and its JSON twin ``GET /api/evals/summary`` show, built once.

Both show ``eval_breakdowns``; the page renders it (with the recent
evaluations beside it), the API returns it with the runs charts of the same
range added (``eval_summary``), which the page does not draw and so does not
compute.
"""

from __future__ import annotations

import msgspec

from app.dashboard.charts import breakdown, dashboard_charts, eval_charts
from app.evals.responses import EvalBreakdowns, EvalSummary, breakdown_group, chart
from app.store import Store


async def eval_breakdowns(
    store: Store, range_key: str, model: str | None = None, session: str | None = None
) -> EvalBreakdowns:
    """Success rate and metric means over time (for one model or session if given),
    per model and per session."""
    charts = await store.read(eval_charts, range_key, model or None, session or None)
    by_model = await store.read(breakdown, "model", range_key)
    by_session = await store.read(breakdown, "session", range_key)
    return EvalBreakdowns(
        range=range_key,
        success=chart(charts["success"]),
        metrics=[chart(c) for c in charts["metrics"]],
        by_model=[breakdown_group(g) for g in by_model],
        by_session=[breakdown_group(g) for g in by_session],
    )


async def eval_summary(
    store: Store, range_key: str, model: str | None = None, session: str | None = None
) -> EvalSummary:
    """The breakdowns, and the runs charts of the same range."""
    shown = await eval_breakdowns(store, range_key, model, session)
    runs = (await store.read(dashboard_charts, range_key))["charts"]
    return EvalSummary(**msgspec.structs.asdict(shown), runs=[chart(c) for c in runs])
