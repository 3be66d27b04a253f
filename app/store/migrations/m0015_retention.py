"""Pins, and the indexes that let retention tell a kept run from an expired one cheaply.

- ``runs.pinned_at``: set when someone pins the run from its page or the API
  (``app/runs/pins.py``); a pinned run is kept whatever its age.
- ``evaluations.pinned_at``: a pinned evaluation keeps the run it scores.
- Runs used by an experiment (``experiment_items.run_id``) or a dataset built
  from runs (``dataset_items.metadata`` holds ``{"run_id": ...}``) are kept
  too; each gets an index so the check is a lookup, not a scan per run.
- ``alerts.run_id`` and ``otlp_metrics.received_at`` get indexes for the
  deletes themselves.

Existing rows need no conversion: nothing was pinned before, and the indexes
are built from the rows already there.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration

# Frozen copy of app.store.retention.DATASET_RUN (a migration must not change when code
# does): the query must spell the expression exactly like this to use the index.
_DATASET_RUN = "(CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.run_id') END)"


@migration("0015_retention")
def retention(db: Database) -> None:
    for table in ("runs", "evaluations"):
        if "pinned_at" not in db.table(table).columns_dict:
            db.table(table).add_column("pinned_at", float)
    db.execute("CREATE INDEX IF NOT EXISTS experiment_items_run ON experiment_items (run_id)")
    db.execute(f"CREATE INDEX IF NOT EXISTS dataset_items_run ON dataset_items {_DATASET_RUN}")
    db.execute("CREATE INDEX IF NOT EXISTS alerts_run ON alerts (run_id)")
    db.execute("CREATE INDEX IF NOT EXISTS otlp_metrics_received ON otlp_metrics (received_at)")
