"""Append one event to a run's log and project it onto the run's tables.

Runs on the writer thread inside one transaction: the event row, the derived
rows (messages, tool calls, spans) and the running totals on the run row
commit together, so pages and the API never see a half-recorded step.

A native run's spans are built here from its events (``app.store.spans``).
An ingested run's spans are stored whole by ingest before its events are
recorded (their payloads name the ``span_id``): the projection then only
adds what pricing computed.

Stored compactly (``app.store.event_log`` reads it back whole): a model
call's token rows are folded into one when the call ends, values kept by a
projection's table are not repeated in the event row, and memory snapshots
are kept as deltas.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.pricing.tables import price_event
from app.store.event_log import event_cell
from app.store.processes import INTERRUPTED_ERROR, LEASE_S, forget_dead_processes, orphaned_runs
from app.store.rows import encode_json, json_object
from app.store.run_patch import RunPatch
from app.store.runs import get_run
from app.store.snapshot_deltas import insert_snapshot
from app.store.spans import agent_span, insert_span, llm_span, span_id_of, tool_span, trace_id_of
from app.store.statuses import ACTIVE, FAILED, INTERRUPTED, RUNNING, SUCCEEDED
from app.store.token_runs import (
    INSERT_EVENT,
    PIECES,
    coalesce_before,
    fold_written,
    piece_rows,
)

# The last event of every run, whatever its outcome.
TERMINAL_EVENTS = frozenset({"run_finished", "run_failed", "run_interrupted"})
# Events after which the run row's totals or status changed.
TOTALS_EVENTS = TERMINAL_EVENTS | {"run_started", "llm_call_finished", "tool_call_finished"}
# Events after which a model call's streamed pieces are folded into one row here
# (app.store.token_runs): the run's end, for a cut-off stream. A call that ends
# with its message is folded by the recorder, as a deferrable write of its own
# (fold_call), so the folding never holds up the live writes of other runs.
COALESCE_AT = TERMINAL_EVENTS


def record_event(
    db: Database,
    run_id: str,
    seq: int,
    event: dict[str, Any],
    *,
    run_row: bool = True,
    patch: RunPatch | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Store ``event`` as number ``seq`` of ``run_id``.

    Returns the payload as stored (LLM calls and tool calls with cost lines
    gain their cost, from the dated price tables) and the run row when its
    totals or status changed, else None.

    What the event changes on the run row (and ``runs.last_seq``) is written
    by one UPDATE at the end. A caller that records many events of a run in
    one write (OTLP ingest) passes its own ``patch`` and ``run_row=False``,
    then writes the patch (``RunPatch.write``) and reads the row once for
    all of them: the event rows and the run's changes wait in the patch.
    """
    kind = event["type"]
    at = float(event["at"])
    own = patch is None
    run = RunPatch(run_id) if patch is None else patch
    run.set(last_seq=seq)
    if kind in ("llm_call_finished", "tool_call_finished"):
        event = price_event(db, event, run.prices)
    project = _PROJECTIONS.get(kind)
    if project is not None:
        # First, so the event row can leave out what the projection stored (event_log).
        project(db, run, seq, at, event)
        if kind in TERMINAL_EVENTS:
            run.write(db)  # the response the event row leaves out must be on the run row
    row = (run_id, seq, kind, at, event_cell(db, run_id, kind, event))
    if own:
        db.execute(INSERT_EVENT, row)
        run.write(db)
    else:
        run.insert_event(row)
    if kind in COALESCE_AT:
        run.write(db)  # the pieces to fold are read from the table
        coalesce_before(db, run_id, seq, event.get("content") if kind == "message" else None)
    return event, (get_run(db, run_id) if run_row and kind in TOTALS_EVENTS else None)


# Events a model streams many of (the pieces that app.store.token_runs folds);
# they have no projection and no price.
STREAMED_EVENTS = PIECES


def record_streamed(
    db: Database, run_id: str, events: list[tuple[int, dict[str, Any]]]
) -> list[tuple[int, dict[str, Any]]]:
    """Store consecutive streamed events (tokens, tool-call pieces) of ``run_id`` at once.

    What :func:`record_event` does for each of them, with one statement for
    all: the recorder hands over every piece that streamed while its last
    write was being committed, so a fast model costs one write per commit, and
    its pieces a compact row and a row for the last (``token_runs.piece_rows``).
    """
    db.conn.executemany(INSERT_EVENT, piece_rows(run_id, events))
    db.conn.execute("update runs set last_seq = ? where id = ?", [events[-1][0], run_id])
    return events


def fold_call(
    db: Database,
    run_id: str,
    message_seq: int,
    content: Any,
    pieces: list[tuple[int, dict[str, Any]]] | None = None,
) -> int:
    """Fold the streamed pieces of the model call whose answer is message ``message_seq``.

    ``pieces``: the call's pieces as the recorder wrote them, ``(seq, payload)``.
    When they are still the rows stored (consecutive, none folded or missing),
    they are folded as they are, without reading 200 rows back and parsing
    them; otherwise the rows are read (``coalesce_before``).
    """
    folded = fold_written(db, run_id, pieces, content, message_seq) if pieces else None
    return coalesce_before(db, run_id, message_seq, content) if folded is None else folded


def _run_started(db: Database, run: RunPatch, seq: int, at: float, e: dict[str, Any]) -> None:
    run.set(
        status=RUNNING, model=e["model"], provider=e["provider"], params=encode_json(e["params"])
    )
    if e.get("external_spans"):  # an ingested trace: its own spans are stored as they come
        return
    run_id = run.run_id
    db.execute(
        "update runs set trace_id = coalesce(trace_id, ?) where id = ?",
        [trace_id_of(run_id), run_id],
    )
    session = db.execute("select session_id from runs where id = ?", [run_id]).fetchone()
    insert_span(db, agent_span(run_id, at, e, session[0] if session else None))


def _message(db: Database, run: RunPatch, seq: int, at: float, e: dict[str, Any]) -> None:
    db.execute(
        "insert into messages (run_id, seq, role, content, tool_calls, tool_call_id, name, at)"
        " values (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run.run_id,
            seq,
            e["role"],
            e["content"],
            encode_json(list(e.get("tool_calls") or [])),
            e.get("tool_call_id"),
            e.get("name"),
            at,
        ],
    )


def _tool_started(db: Database, run: RunPatch, seq: int, at: float, e: dict[str, Any]) -> None:
    db.execute(
        "insert into tool_calls (run_id, call_id, seq, name, arguments, status, started_at)"
        " values (?, ?, ?, ?, ?, 'running', ?)",
        [run.run_id, e["call_id"], seq, e["name"], encode_json(e["arguments"]), at],
    )


def _tool_finished(db: Database, run: RunPatch, seq: int, at: float, e: dict[str, Any]) -> None:
    run_id = run.run_id
    status = "ok" if e.get("error") is None else "error"
    db.execute(
        "update tool_calls set result = ?, error = ?, status = ?, latency_ms = ?, ended_at = ?,"
        " cost_lines = ?, cost_usd = ? where run_id = ? and call_id = ?",
        [
            e.get("result"),
            e.get("error"),
            status,
            e["latency_ms"],
            at,
            encode_json(list(e.get("cost_lines") or [])),
            e.get("cost_usd"),
            run_id,
            e["call_id"],
        ],
    )
    # Ingested: the span is stored, only its cost is new.
    if (
        not e.get("span_id")
        or not db.execute(
            "update spans set cost_usd = ? where run_id = ? and span_id = ?",
            [e.get("cost_usd"), run_id, e["span_id"]],
        ).rowcount
    ):
        insert_span(db, tool_span(run_id, at, e))
    # A tool's cost (e.g. text-to-speech) is not for tokens: it is also an extra cost.
    usd = e.get("cost_usd") or 0.0
    run.add(
        e.get("cost_status") or None,
        tool_calls=1,
        tool_errors=0 if status == "ok" else 1,
        cost_usd=usd,
        extra_cost_usd=usd,
    )


def _llm_finished(db: Database, run: RunPatch, seq: int, at: float, e: dict[str, Any]) -> None:
    # Contract C1: tokens may be null (no usage reported: unknown, not 0), and a
    # failed (ingested) call carries "status": "error" with its "error".
    run_id = run.run_id
    tokens_in, tokens_out = e.get("input_tokens"), e.get("output_tokens")
    # Ingested: the span is stored, its tokens and cost are added.
    if (
        not e.get("span_id")
        or not db.execute(
            "update spans set input_tokens = ?, output_tokens = ?, cost_usd = ?"
            " where run_id = ? and span_id = ?",
            [tokens_in, tokens_out, e.get("cost_usd"), run_id, e["span_id"]],
        ).rowcount
    ):
        row = db.execute("select params from runs where id = ?", [run_id]).fetchone()
        insert_span(db, llm_span(run_id, seq, at, e, json_object(row[0] if row else None)))
    # Run totals keep the tokens that were reported and count the calls that reported none.
    run.add(
        e["cost_status"],
        input_tokens=tokens_in or 0,
        output_tokens=tokens_out or 0,
        usage_unknown_calls=1 if tokens_in is None or tokens_out is None else 0,
        cost_usd=e["cost_usd"] or 0.0,
    )


def _ended(status: str):
    def project(db: Database, run: RunPatch, seq: int, at: float, e: dict[str, Any]) -> None:
        run.set(status=status, response=e.get("response"), error=e.get("error"), ended_at=at)
        run.end_at(at)
        # The native agent span ends with the run ('agent' is its id before m0012).
        db.execute(
            "update spans set end_at = ?, status = ?, status_message = ?"
            " where run_id = ? and span_id in (?, 'agent') and status = 'running'",
            [
                at,
                "ok" if status == SUCCEEDED else "error",
                e.get("error"),
                run.run_id,
                span_id_of(run.run_id, "agent"),
            ],
        )

    return project


def _memory_snapshot(db: Database, run: RunPatch, seq: int, at: float, e: dict[str, Any]) -> None:
    insert_snapshot(db, run.run_id, seq, at, e)


_PROJECTIONS = {
    "run_started": _run_started,
    "memory_snapshot": _memory_snapshot,
    "message": _message,
    "tool_call_started": _tool_started,
    "tool_call_finished": _tool_finished,
    "llm_call_finished": _llm_finished,
    "run_finished": _ended(SUCCEEDED),
    "run_failed": _ended(FAILED),
    "run_interrupted": _ended(INTERRUPTED),
}


EndedRun = tuple[int, dict[str, Any], dict[str, Any] | None]


def end_active_run(db: Database, run_id: str, kind: str, at: float, error: str) -> EndedRun | None:
    """Record the terminal event ``kind`` with ``error`` if the run is still active.

    The sequence number comes from the run row, so this ends a run from
    outside its recorder too (the watchdog, the start-up sweep, a storage
    failure). Returns the sequence number, the stored event and the run row,
    for the live broker; None when the run had ended already (or does not
    exist): the first end recorded is the run's end.
    """
    row = db.execute("select status, last_seq from runs where id = ?", [run_id]).fetchone()
    if row is None or row[0] not in ACTIVE:
        return None
    seq = (row[1] or 0) + 1
    stored, run = record_event(db, run_id, seq, {"type": kind, "at": at, "error": error})
    return seq, stored, run


def sweep_orphans(
    db: Database, at: float, lease_s: float = LEASE_S, unowned: bool = False
) -> list[tuple[str, int, dict[str, Any], dict[str, Any] | None]]:
    """End the orphaned runs ``run_interrupted`` and forget dead processes.

    Only runs left queued or running by a process with no live heartbeat (a
    crash, a stop; ``app.store.processes.orphaned_runs``) are swept: the runs
    of a live process (a replica beside this one, an ``agentop run`` in flight)
    stay its own. Runs with no owner only with ``unowned``. Returns (run id,
    seq, stored event, run row) of each run ended here, for the live broker; a
    run another sweeper ended first is not in the list.
    """
    ended = []
    for run_id in orphaned_runs(db, at, lease_s, unowned):
        done = end_active_run(db, run_id, "run_interrupted", at, INTERRUPTED_ERROR)
        if done is not None:
            ended.append((run_id, *done))
    forget_dead_processes(db, at, lease_s)
    return ended
