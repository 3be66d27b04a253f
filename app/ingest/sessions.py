"""Sessions of ingested runs: a conversation id shared by several traces.

``session.id`` (OpenInference) or ``gen_ai.conversation.id`` (GenAI) names
a conversation. Some SDKs give every run a new one, and a session per run
would say nothing: a conversation becomes a session only once a second
trace shares its id, and then every run of it joins.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.ingest.trace_runs import TraceRun
from app.store.statuses import FAILED_LIKE, TERMINAL, sql_list


def join_conversation(db: Database, trace: TraceRun, conversation: str) -> None:
    """Note the trace's conversation; once two traces share it, their runs form a session."""
    if trace.conversation_id is not None:
        return
    trace.conversation_id = conversation
    db.execute(
        "update otlp_traces set conversation_id = ? where trace_id = ?",
        [conversation, trace.trace_id],
    )
    others = [
        row[0]
        for row in db.execute(
            "select run_id from otlp_traces where conversation_id = ? and trace_id != ?",
            [conversation, trace.trace_id],
        )
    ]
    if others:
        for run_id in [*others, trace.run_id]:
            _join_session(db, run_id, conversation)


def _join_session(db: Database, run_id: str, session: str) -> None:
    """Put a run that has no session yet into ``session`` (its id came on a later span).

    Session totals are kept by triggers on inserting runs (migration 0003),
    which a later ``session_id`` does not fire, so the run is added here.
    """
    changed = db.execute(
        "update runs set session_id = ? where id = ? and session_id is null", [session, run_id]
    ).rowcount
    if not changed or not db.table("run_sessions").exists():
        return
    db.execute(
        "insert or ignore into run_sessions (name, created_at, last_run_at)"
        " select ?, started_at, started_at from runs where id = ?",
        [session, run_id],
    )
    db.execute(
        f"""
        update run_sessions set
          runs = runs + 1,
          last_run_at = max(coalesce(last_run_at, 0), (select started_at from runs where id = :run)),
          input_tokens = input_tokens + (select input_tokens from runs where id = :run),
          output_tokens = output_tokens + (select output_tokens from runs where id = :run),
          cost_usd = cost_usd + (select cost_usd from runs where id = :run),
          finished = finished + (select status in {sql_list(TERMINAL)}
                                 from runs where id = :run),
          failed = failed + (select status in {sql_list(FAILED_LIKE)} from runs where id = :run)
        where name = :session
        """,
        {"run": run_id, "session": session},
    )
