"""A label for runs that have no prompt, and token counts brought back within bounds.

- ``runs.label`` names a run that has no prompt: an ingested trace whose
  root span carries neither messages nor ``input.value`` (what
  opentelemetry-instrumentation-openai-v2 sends by default) is labelled by
  its root span's name. Runs ingested before this migration get their
  service's name.
- Ingest now clamps token counts to ``app.ingest.normalize.MAX_TOKENS``;
  rows stored before that may hold values near 2**63 whose ``sum()`` breaks
  the dashboard with "integer overflow", so they are clamped here too, and
  the session totals recomputed from the clamped rows.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration

# Kept equal to app.ingest.normalize.MAX_TOKENS (a migration must not change when code does).
_MAX_TOKENS = 10**12


@migration("0010_run_label")
def run_label(db: Database) -> None:
    if "label" not in db.table("runs").columns_dict:
        db.table("runs").add_column("label", str)
    db.execute(
        "update runs set label = (select service_name from otlp_traces t where t.run_id = runs.id)"
        " where source = 'otlp' and (prompt is null or prompt = '')"
    )
    clamped = 0
    for table in ("runs", "spans"):
        for column in ("input_tokens", "output_tokens"):
            clamped += db.execute(
                f"update {table} set {column} = max(0, min({column}, ?))"
                f" where {column} > ? or {column} < 0",
                [_MAX_TOKENS, _MAX_TOKENS],
            ).rowcount
    if clamped:
        # The session totals absorbed the huge values through triggers: recompute them.
        db.execute(
            """
            update run_sessions set
              input_tokens = (select coalesce(sum(input_tokens), 0) from runs
                              where session_id = run_sessions.name),
              output_tokens = (select coalesce(sum(output_tokens), 0) from runs
                               where session_id = run_sessions.name)
            """
        )
