"""A compact event log: token rows folded per model call, nothing stored twice, snapshot deltas.

Existing data is converted in one pass, run by run (each run's rows are
read through the ``(run_id, seq)`` key, so the work grows with the data,
never with its square):

- ``memory_snapshots`` gains ``kept``, ``scratch_removed`` and ``refs``:
  every step after a run's first becomes what changed since the step before
  (``app.store.snapshot_deltas``), a row that cannot be read, or whose delta
  would not rebuild it exactly, stays whole; long message contents that the
  run's ``messages`` hold become references to them;
- a ``memory_snapshot`` event's ``messages`` and ``scratch``, a ``message``
  event's ``content`` and a ``tool_call_finished`` event's ``result`` are
  left out of the event row (set to null and listed under ``_moved``) where
  the other table holds the very same value (``app.store.event_log``);
- a ``run_finished`` event's ``response`` likewise, when the run row has it;
- the token and tool-call pieces of each model call become one ``deltas``
  row (``app.store.token_runs``), their texts kept as lengths into the
  answer's message when they join up to it, except the pieces a run still
  active is streaming (its recorder folds them when the call ends).
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlite_utils import Database

from app.store.migrations import migration
from app.store.rows import encode_json
from app.store.snapshot_deltas import Memory, delta, fold_run, message_finder, with_refs
from app.store.statuses import ACTIVE
from app.store.token_runs import PIECES, compactable, fold_group, piece_payload

_MOVED = "_moved"  # app.store.event_log.MOVED, as this migration wrote it
_BETWEEN = frozenset({"llm_call_finished", "model_loading", "model_loaded"})


@migration("0014_compact_log")
def compact_log(db: Database) -> None:
    snapshots = db.table("memory_snapshots")
    for column, kind in (("kept", int), ("scratch_removed", str), ("refs", str)):
        if column not in snapshots.columns_dict:
            snapshots.add_column(column, kind)
    for (run_id,) in db.execute("select distinct run_id from memory_snapshots").fetchall():
        _snapshots_to_deltas(db, run_id)
    _move_out_message_content(db)
    _move_out_tool_results(db)
    _move_out_responses(db)
    piece_marks = ", ".join("?" * len(PIECES))
    runs = db.execute(
        f"select distinct run_id from events where type in ({piece_marks})", sorted(PIECES)
    ).fetchall()
    for (run_id,) in runs:
        _fold_pieces(db, run_id)


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _snapshots_to_deltas(db: Database, run_id: str) -> None:
    rows = [
        dict(r)
        for r in db.execute(
            "select id, seq, step, messages, scratch, kept, scratch_removed, refs,"
            " kept is null as whole from memory_snapshots where run_id = ? order by step",
            [run_id],
        ).fetchall()
    ]
    before = Memory()
    readable: dict[int, tuple[str, str]] = {}  # seq -> (messages, scratch) as JSON text
    find = message_finder(db, run_id)
    # fold_run() rebuilds each step from whatever shape it has (a second run finds deltas).
    for row, snap in zip(rows, fold_run(db, run_id, rows), strict=True):
        messages, scratch = snap["messages"], snap["scratch"]
        if not isinstance(messages, list) or not isinstance(scratch, dict):
            # Unreadable: stays whole, and the next step builds on what can be read of it.
            before = Memory(
                row["step"],
                messages if isinstance(messages, list) else [],
                scratch if isinstance(scratch, dict) else {},
            )
            continue
        readable[row["seq"]] = (encode_json(messages), encode_json(scratch))
        previous, before = before, Memory(row["step"], messages, scratch)
        if not row["whole"]:
            continue  # converted already
        change = delta(previous, messages, scratch) if previous.step is not None else None
        if change is None:
            stored, refs = with_refs(messages, find)
            update: dict[str, Any] = {"messages": encode_json(stored)}
        else:
            kept, changed, set_keys, removed = change
            stored, refs = with_refs(changed, find)
            update = {
                "messages": encode_json(stored),
                "scratch": encode_json(set_keys),
                "kept": kept,
                "scratch_removed": encode_json(removed),
            }
        if change is None and not refs:
            continue  # whole, and nothing in it is kept elsewhere
        update["refs"] = encode_json(refs) if refs else None
        columns = ", ".join(f"{name} = ?" for name in update)
        db.execute(
            f"update memory_snapshots set {columns} where id = ?", [*update.values(), row["id"]]
        )
    _move_out_snapshot_payloads(db, run_id, readable)


def _move_out_snapshot_payloads(
    db: Database, run_id: str, whole: dict[int, tuple[str, str]]
) -> None:
    """Leave out of each snapshot event what its ``memory_snapshots`` row gives back."""
    events = db.execute(
        "select seq, payload from events where run_id = ? and type = 'memory_snapshot'",
        [run_id],
    ).fetchall()
    for seq, text in events:
        payload = _json(text)
        stored = whole.get(seq)
        if not isinstance(payload, dict) or stored is None or _MOVED in payload:
            continue
        messages, scratch = payload.get("messages"), payload.get("scratch")
        if not isinstance(messages, list) or not isinstance(scratch, dict):
            continue
        if (encode_json(messages), encode_json(scratch)) != stored:
            continue
        moved = {k: (None if k in ("messages", "scratch") else v) for k, v in payload.items()}
        moved[_MOVED] = ["messages", "scratch"]
        db.execute(
            "update events set payload = ? where run_id = ? and seq = ?",
            [encode_json(moved), run_id, seq],
        )


def _move_out_message_content(db: Database) -> None:
    # CASE, not AND: SQLite does not promise to test json_valid first.
    db.execute(
        """
        update events set payload = json_set(payload, '$.content', null, '$._moved',
                                             json('["content"]'))
        where type = 'message'
          and case when json_valid(payload) then
                json_type(payload, '$.content') = 'text'
                and json_type(payload, '$._moved') is null
                and json_extract(payload, '$.content') = (
                    select m.content from messages m
                    where m.run_id = events.run_id and m.seq = events.seq
                    order by m.id limit 1)
              else 0 end
        """
    )


def _move_out_tool_results(db: Database) -> None:
    db.execute(
        """
        update events set payload = json_set(payload, '$.result', null, '$._moved',
                                             json('["result"]'))
        where type = 'tool_call_finished'
          and case when json_valid(payload) then
                json_type(payload, '$.result') = 'text'
                and json_type(payload, '$._moved') is null
                and exists (
                    select 1 from tool_calls t
                    where t.run_id = events.run_id
                      and t.call_id = json_extract(events.payload, '$.call_id')
                      and t.result = json_extract(events.payload, '$.result'))
              else 0 end
        """
    )


def _move_out_responses(db: Database) -> None:
    db.execute(
        """
        update events set payload = json_set(payload, '$.response', null, '$._moved',
                                             json('["response"]'))
        where type = 'run_finished'
          and case when json_valid(payload) then
                json_type(payload, '$.response') = 'text'
                and json_extract(payload, '$.response') != ''
                and json_type(payload, '$._moved') is null
                and json_extract(payload, '$.response') = (
                    select r.response from runs r where r.id = events.run_id)
              else 0 end
        """
    )


def _fold_pieces(db: Database, run_id: str) -> None:
    marks = ", ".join("?" * len(PIECES))
    rows = db.execute(
        f"select seq, type, case when type in ({marks}) then payload end from events"
        " where run_id = ? order by seq",
        [*sorted(PIECES), run_id],
    ).fetchall()
    status = db.execute("select status from runs where id = ?", [run_id]).fetchone()
    groups: list[list[tuple[int, dict[str, Any]]]] = [[]]
    ends: list[int] = []  # per group: the index in ``rows`` of the row after it
    for i, (seq, kind, text) in enumerate(rows):
        payload = piece_payload(text) if kind in PIECES else None
        if compactable(kind, payload):
            groups[-1].append((seq, cast(dict[str, Any], payload)))
            continue
        if groups[-1]:
            ends.append(i)
            groups.append([])
    streaming = status is not None and status[0] in ACTIVE
    if groups[-1] and streaming and groups[-1][-1][0] == rows[-1][0]:
        groups.pop()  # the call still streaming: its recorder folds it when it ends
    for group, end in zip(groups, [*ends, len(rows)], strict=False):
        message_seq = _answer_after(rows, end)
        content = None
        if message_seq is not None:
            found = db.execute(
                "select content from messages where run_id = ? and seq = ? order by id limit 1",
                [run_id, message_seq],
            ).fetchone()
            content = found[0] if found else None
        fold_group(db, run_id, group, content, message_seq)


def _answer_after(rows: list[Any], index: int) -> int | None:
    """The seq of the message after a call's end (from ``rows[index]`` on), as the recorder
    folds at: only the call's end and model load markers between."""
    for seq, kind, _ in rows[index:]:
        if kind == "message":
            return seq
        if kind not in _BETWEEN:
            return None
    return None
