"""Replays, diffs, sessions of runs, and what makes the runs list fast at 100k runs.

- ``runs.parent_kind`` says what ``parent_run_id`` means: ``replay`` (a re-run
  with overrides) or ``agent`` (a child run an agent started as a tool).
- ``diffs`` stores a comparison of two runs. A replay's diff row is created
  ``pending`` when the replay starts, so its id is known at once, and filled
  when both runs have ended.
- ``run_sessions`` keeps running totals per session name (``runs.session_id``),
  updated by triggers in the same transaction as the run row, so the sessions
  list never aggregates over runs. (``sessions`` is taken by login sessions.)
- ``runs_fts`` is a full-text index of prompts and responses. Its triggers
  fire only when ``prompt`` or ``response`` change: the recorder updates every
  run row once per event (``last_seq``), and reindexing then would be costly.
  It is an external-content index keyed by rowid; after a VACUUM (which may
  renumber rowids) run ``INSERT INTO runs_fts(runs_fts) VALUES('rebuild')``.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database

from app.store.migrations import migration

_TERMINAL = "('succeeded', 'failed', 'interrupted')"

_SESSION_TRIGGERS = f"""
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
    finished = finished + (new.status IN {_TERMINAL}),
    failed = failed + (new.status = 'failed')
  WHERE name = new.session_id;
END;

CREATE TRIGGER run_sessions_update
AFTER UPDATE OF input_tokens, output_tokens, cost_usd, status ON runs
WHEN new.session_id IS NOT NULL
BEGIN
  UPDATE run_sessions SET
    input_tokens = input_tokens + coalesce(new.input_tokens, 0) - coalesce(old.input_tokens, 0),
    output_tokens = output_tokens + coalesce(new.output_tokens, 0) - coalesce(old.output_tokens, 0),
    cost_usd = cost_usd + coalesce(new.cost_usd, 0) - coalesce(old.cost_usd, 0),
    finished = finished + (new.status IN {_TERMINAL}) - (old.status IN {_TERMINAL}),
    failed = failed + (new.status = 'failed') - (old.status = 'failed')
  WHERE name = new.session_id;
END;

CREATE TRIGGER run_sessions_delete AFTER DELETE ON runs WHEN old.session_id IS NOT NULL
BEGIN
  UPDATE run_sessions SET
    runs = runs - 1,
    input_tokens = input_tokens - coalesce(old.input_tokens, 0),
    output_tokens = output_tokens - coalesce(old.output_tokens, 0),
    cost_usd = cost_usd - coalesce(old.cost_usd, 0),
    finished = finished - (old.status IN {_TERMINAL}),
    failed = failed - (old.status = 'failed')
  WHERE name = old.session_id;
END;
"""

_FTS = """
CREATE VIRTUAL TABLE runs_fts USING fts5(
  prompt, response, content='runs', content_rowid='rowid',
  tokenize='unicode61 remove_diacritics 2'
);

CREATE TRIGGER runs_fts_insert AFTER INSERT ON runs BEGIN
  INSERT INTO runs_fts (rowid, prompt, response) VALUES (new.rowid, new.prompt, new.response);
END;

CREATE TRIGGER runs_fts_delete AFTER DELETE ON runs BEGIN
  INSERT INTO runs_fts (runs_fts, rowid, prompt, response)
    VALUES ('delete', old.rowid, old.prompt, old.response);
END;

CREATE TRIGGER runs_fts_update AFTER UPDATE OF prompt, response ON runs BEGIN
  INSERT INTO runs_fts (runs_fts, rowid, prompt, response)
    VALUES ('delete', old.rowid, old.prompt, old.response);
  INSERT INTO runs_fts (rowid, prompt, response) VALUES (new.rowid, new.prompt, new.response);
END;

INSERT INTO runs_fts (runs_fts) VALUES ('rebuild');
"""


@migration("0003_replay_sessions")
def replay_sessions(db: Database) -> None:
    db.table("runs").add_column("parent_kind", str)  # replay | agent
    db.table("runs").create_index(["model", "started_at"])
    db.table("runs").create_index(["parent_run_id", "started_at"])
    db.table("diffs").create(
        {
            "id": str,
            "run_a": str,  # the base: a replay's parent
            "run_b": str,  # the one compared with it: the replay
            "kind": str,  # replay | compare
            "status": str,  # pending | ready
            "overrides": str,  # JSON: what a replay changed
            "data": str,  # JSON: the computed diff (app.replay.diffs.diff_runs)
            "identical": int,
            "similarity": float,
            "created_at": float,
            "computed_at": float,
        },
        pk="id",
        not_null={"run_a", "run_b", "kind", "status", "created_at"},
        foreign_keys=[("run_a", "runs", "id"), ("run_b", "runs", "id")],
    )
    db.table("diffs").create_index(["run_a", "created_at"])
    db.table("diffs").create_index(["run_b", "created_at"])
    db.table("run_sessions").create(
        {
            "id": int,
            "name": str,
            "created_at": float,
            "last_run_at": float,
            "runs": int,
            "finished": int,  # succeeded, failed or interrupted
            "failed": int,
            "input_tokens": int,
            "output_tokens": int,
            "cost_usd": float,
        },
        pk="id",
        not_null={"name"},
        defaults={
            "runs": 0,
            "finished": 0,
            "failed": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
        },
    )
    db.table("run_sessions").create_index(["name"], unique=True)
    db.table("run_sessions").create_index(["last_run_at"])
    db.execute(
        f"""
        INSERT INTO run_sessions (name, created_at, last_run_at, runs, finished, failed,
                                  input_tokens, output_tokens, cost_usd)
        SELECT session_id, min(started_at), max(started_at), count(*),
               sum(status IN {_TERMINAL}), sum(status = 'failed'),
               coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
               coalesce(sum(cost_usd), 0)
        FROM runs WHERE session_id IS NOT NULL GROUP BY session_id
        """
    )
    # executescript would commit the migration's transaction half-way; run each statement.
    for script in (_SESSION_TRIGGERS, _FTS):
        for statement in _statements(script):
            db.execute(statement)


def _statements(script: str) -> list[str]:
    """Split a script into statements; sqlite3 knows where a trigger body ends."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
