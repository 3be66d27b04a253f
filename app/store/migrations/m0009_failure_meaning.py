"""Interrupted runs count as failures in session totals, and the failure filter has an index.

Until now the session triggers (migration 0003) counted only ``failed`` runs
in ``run_sessions.failed``, so a session whose runs were mostly interrupted
showed a 0 % failure rate while the dashboard chart counted them as failed.
The triggers are recreated to count every status in
``app.store.statuses.FAILED_LIKE``, and the totals of existing sessions are
recomputed from their runs.

``runs_failed_like`` indexes that same set (with ``started_at`` for the
order, and ``status`` so the runs list reads the index alone): the
``status=failed`` filter of ``/runs`` pages through it without sorting.

``sessions(expires_at)`` (login sessions) lets each login delete the expired
ones without a scan.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration

# Frozen copies of app.store.statuses.TERMINAL and FAILED_LIKE: a migration must
# not change when code does (tests/test_status_meaning.py checks they agree; a
# new meaning needs a new migration).
_ENDED = "('succeeded', 'failed', 'interrupted')"
_FAILED = "('failed', 'interrupted')"

# Same totals as migration 0003, with "failed" meaning FAILED_LIKE.
_SESSION_TRIGGERS = [
    f"""
CREATE TRIGGER run_sessions_insert AFTER INSERT ON runs WHEN new.session_id IS NOT NULL
BEGIN
  INSERT OR IGNORE INTO run_sessions (name, created_at, last_run_at)
    VALUES (new.session_id, new.started_at, new.started_at);
  UPDATE run_sessions SET
    runs = runs + 1,
    last_run_at = max(coalesce(last_run_at, 0), new.started_at),
    input_tokens = input_tokens + coalesce(new.input_tokens, 0),
    output_tokens = output_tokens + coalesce(new.output_tokens, 0),
    cost_usd = cost_usd + coalesce(new.cost_usd, 0),
    finished = finished + (new.status IN {_ENDED}),
    failed = failed + (new.status IN {_FAILED})
  WHERE name = new.session_id;
END
""",
    f"""
CREATE TRIGGER run_sessions_update
AFTER UPDATE OF input_tokens, output_tokens, cost_usd, status ON runs
WHEN new.session_id IS NOT NULL
BEGIN
  UPDATE run_sessions SET
    input_tokens = input_tokens + coalesce(new.input_tokens, 0) - coalesce(old.input_tokens, 0),
    output_tokens = output_tokens + coalesce(new.output_tokens, 0) - coalesce(old.output_tokens, 0),
    cost_usd = cost_usd + coalesce(new.cost_usd, 0) - coalesce(old.cost_usd, 0),
    finished = finished + (new.status IN {_ENDED}) - (old.status IN {_ENDED}),
    failed = failed + (new.status IN {_FAILED}) - (old.status IN {_FAILED})
  WHERE name = new.session_id;
END
""",
    f"""
CREATE TRIGGER run_sessions_delete AFTER DELETE ON runs WHEN old.session_id IS NOT NULL
BEGIN
  UPDATE run_sessions SET
    runs = runs - 1,
    input_tokens = input_tokens - coalesce(old.input_tokens, 0),
    output_tokens = output_tokens - coalesce(old.output_tokens, 0),
    cost_usd = cost_usd - coalesce(old.cost_usd, 0),
    finished = finished - (old.status IN {_ENDED}),
    failed = failed - (old.status IN {_FAILED})
  WHERE name = old.session_id;
END
""",
]


@migration("0009_failure_meaning")
def failure_meaning(db: Database) -> None:
    for name in ("run_sessions_insert", "run_sessions_update", "run_sessions_delete"):
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in _SESSION_TRIGGERS:
        db.execute(statement.strip())
    db.execute(
        f"""
        UPDATE run_sessions SET
          finished = (SELECT count(*) FROM runs
                      WHERE runs.session_id = run_sessions.name AND runs.status IN {_ENDED}),
          failed = (SELECT count(*) FROM runs
                    WHERE runs.session_id = run_sessions.name AND runs.status IN {_FAILED})
        """
    )
    # The expression is spelt as app.runs.filters.FAILED_LIKE_TERM spells it.
    db.execute(
        f"CREATE INDEX IF NOT EXISTS runs_failed_like ON runs"
        f" ((status IN {_FAILED}), started_at, status)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at)")
