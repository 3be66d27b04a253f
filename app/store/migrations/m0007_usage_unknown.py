"""Unknown usage: count a run's model calls whose provider reported no tokens.

``runs.input_tokens``/``output_tokens`` keep the sum of the tokens that were
reported; ``usage_unknown_calls`` says how many calls are missing from it, so
pages show "unknown" (or "≥ N") instead of a 0 that was never measured.
The dashboard's covering index gains the column so its totals stay index-only.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration


@migration("0007_usage_unknown")
def usage_unknown(db: Database) -> None:
    db.table("runs").add_column("usage_unknown_calls", int, not_null_default=0)
    db.execute("drop index if exists runs_totals_cover")
    db.execute(
        "create index if not exists runs_totals_cover_usage on runs (status, cost_status,"
        " input_tokens, output_tokens, cost_usd, extra_cost_usd, latency_ms, usage_unknown_calls)"
    )
