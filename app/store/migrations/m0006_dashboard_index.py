"""A covering index for the dashboard totals.

The KPIs add up every run; reading these columns from a narrow index instead
of the wide run rows (prompts, answers) makes that scan several times faster.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0006_dashboard_index")
def dashboard_index(db: Database) -> None:
    db.execute(
        "create index if not exists runs_totals_cover on runs "
        "(status, cost_status, input_tokens, output_tokens, cost_usd, extra_cost_usd, latency_ms)"
    )
