"""A run's event log as stored, and as every reader sees it: each event whole, in order.

The ``events`` table is compact (migration m0014 converted older rows):

- a model call's streamed pieces become one ``deltas`` row once the call is
  over (``app.store.token_runs``);
- what another table keeps already is not written twice: a ``message``
  event's ``content`` is in ``messages``, a ``tool_call_finished`` event's
  ``result`` in ``tool_calls``, a ``run_finished`` event's (non-empty)
  ``response`` on the run row, a ``memory_snapshot`` event's ``messages``
  and ``scratch`` in ``memory_snapshots`` (as deltas,
  ``app.store.snapshot_deltas``). The stored payload keeps the key, set to
  null (so the order of keys survives), and lists it under ``_moved``;
- a payload that opens with its ``type`` and ``at`` (ingested events) leaves
  them to the row's columns, and a message event whose ``messages`` row
  gives back every value is stored as ``{}``. Such a payload is stored as a
  BLOB of JSON, packed when long (``packed_cells.pack_event``): the storage
  class says the head is to be put back, so a row written any other way
  (text) is read as it is;
- payloads are compact JSON (no spaces after separators).

:func:`events_after` puts it all back, so the live stream, a resumed stream
and a page opened later get exactly the events that were published.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from app.store import packed_cells, token_runs
from app.store.backend import is_postgres
from app.store.rows import compact_json
from app.store.snapshot_deltas import fold_run

MOVED = "_moved"
Row = dict[str, Any]
# A message event's values that its ``messages`` row keeps, in the order ingest gives them.
MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
_HEAD = ["type", "at"]
# Headless payloads at least this long are packed: shorter ones gain too little for the time.
PACK_FROM = 64


def event_cell(db: Database, run_id: str, kind: str, event: dict[str, Any]) -> str | bytes:
    """The ``payload`` cell of ``event``'s row, written after its projection ran (so the
    rows it names exist): compact JSON text without what the projection stored
    elsewhere (``_moved_out``); without a leading ``type`` and ``at`` that the row's
    columns keep exactly, as a BLOB (``{}`` for a message its row rebuilds whole)."""
    # Headless and packed cells are SQLite's way to keep the log small (its columns hold
    # text or BLOBs, which tells them apart); PostgreSQL compresses long values itself.
    headless = _headed(kind, event) and not is_postgres(db)
    if headless and kind == "message" and _whole_message(event):
        return b"{}"
    stored = _moved_out(db, run_id, kind, event)
    if headless:
        stored = {k: v for k, v in stored.items() if k != "type" and k != "at"}
    text = compact_json(stored)
    if not headless:
        return text.decode()
    return packed_cells.pack_event(text) if len(text) >= PACK_FROM else text


def _headed(kind: str, event: dict[str, Any]) -> bool:
    """Whether ``event`` opens with the ``type`` and ``at`` its row's columns keep exactly."""
    return list(event)[:2] == _HEAD and event["type"] == kind and type(event["at"]) is float


def _whole_message(event: dict[str, Any]) -> bool:
    """Whether ``event`` is exactly what its ``messages`` row rebuilds (``restore_payload``)."""
    if list(event)[2:] != list(MESSAGE_KEYS):
        return False
    calls = event["tool_calls"]
    return (
        isinstance(event["role"], str)
        and isinstance(event["content"], str)
        and isinstance(calls, list)
        and (not calls or json.loads(compact_json(calls)) == calls)
        and all(event[k] is None or isinstance(event[k], str) for k in ("tool_call_id", "name"))
    )


def _moved_out(db: Database, run_id: str, kind: str, event: dict[str, Any]) -> dict[str, Any]:
    """``event`` without what its projection stored elsewhere: a value is moved out
    only when the other table gives it back as it is."""
    moved: tuple[str, ...] = ()
    if kind == "message" and isinstance(event.get("content"), str):
        moved = ("content",)
    elif (
        kind == "memory_snapshot"
        and isinstance(event.get("messages"), list | tuple)
        and isinstance(event.get("scratch"), dict)
    ):
        moved = ("messages", "scratch")
    elif kind == "run_finished" and isinstance(event.get("response"), str) and event["response"]:
        kept = db.execute(
            "select 1 from runs where id = ? and response = ?", [run_id, event["response"]]
        ).fetchone()
        moved = ("response",) if kept else ()
    elif kind == "tool_call_finished" and isinstance(event.get("result"), str):
        kept = db.execute(
            "select 1 from tool_calls where run_id = ? and call_id = ? and result = ?",
            [run_id, event.get("call_id"), event["result"]],
        ).fetchone()
        moved = ("result",) if kept else ()
    if not moved:
        return event
    return {**{k: (None if k in moved else v) for k, v in event.items()}, MOVED: list(moved)}


def _decode(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text  # a corrupt row reads as the text it is (the partials cope)


def _rows_from(db: Database, run_id: str, first_seq: int, last_seq: int, limit: int) -> list[Row]:
    """Stored rows of a run from ``first_seq`` on (and the row that may straddle it), as one
    read: a call's pieces coalesced meanwhile are either all pieces or all compact here."""
    cursor = db.execute(
        "select e.seq, e.type, e.at, e.payload, m.role, m.content, m.tool_calls,"
        " m.tool_call_id, m.name from events e"
        " left join messages m on e.type = 'message' and m.id = (select id from messages"
        "   where run_id = e.run_id and seq = e.seq order by id limit 1)"
        " where e.run_id = ?"
        " and e.seq >= coalesce((select max(seq) from events where run_id = ? and seq <= ?), ?)"
        " and e.seq <= ? order by e.seq limit ?",
        [run_id, run_id, first_seq, first_seq, last_seq, limit],
    )
    return [
        {
            "seq": seq,
            "type": kind,
            "payload": restore_payload(kind, at, payload, message)
            if isinstance(payload, bytes)
            else _decode(payload),
            "content": message[1],
        }
        for seq, kind, at, payload, *message in cursor
    ]


def restore_payload(kind: str, at: float, cell: bytes, message: list[Any]) -> Any:
    """A payload stored without the ``type`` and ``at`` its row's columns keep, with them
    put back in front (``event_cell``); a message event stored as ``{}``, rebuilt from
    its ``messages`` row."""
    packed = cell[:1] not in (b"{", b"[")  # (``event_cell``)
    payload = _decode((packed and packed_cells.unpack(cell)) or cell)
    if not isinstance(payload, dict):
        return payload
    if kind == "message" and not payload and message[0] is not None:
        role, content, calls, call_id, name = message
        calls = _decode(calls)
        return {
            "type": kind,
            "at": at,
            "role": role,
            "content": content,
            "tool_calls": calls if isinstance(calls, list) else [],
            "tool_call_id": call_id,
            "name": name,
        }
    return {"type": kind, "at": at, **payload}


def _put_back(db: Database, run_id: str, rows: list[Row]) -> None:
    """Fill the values moved to other tables back into the payloads of ``rows``."""
    moved = [r for r in rows if isinstance(r["payload"], dict) and MOVED in r["payload"]]
    if not moved:
        return
    snapshots: dict[int, Row] = {}
    upto = max((r["seq"] for r in moved if r["type"] == "memory_snapshot"), default=None)
    if upto is not None:
        stored = db.query(
            "select seq, step, messages, scratch, kept, scratch_removed, refs"
            " from memory_snapshots where run_id = ? order by step",
            [run_id],
        )
        snapshots = {s["seq"]: s for s in fold_run(db, run_id, stored) if s["seq"] is not None}
    results: dict[Any, Any] = {}
    calls = [r["payload"].get("call_id") for r in moved if r["type"] == "tool_call_finished"]
    if calls:
        marks = ", ".join("?" * len(calls))
        results = dict(
            db.execute(
                f"select call_id, result from tool_calls where run_id = ? and call_id in ({marks})",
                [run_id, *calls],
            ).fetchall()
        )
    response = None
    if any(r["type"] == "run_finished" for r in moved):
        found = db.execute("select response from runs where id = ?", [run_id]).fetchone()
        response = found[0] if found else None
    for row in moved:
        payload = row["payload"]
        payload.pop(MOVED)
        if row["type"] == "run_finished":
            payload["response"] = response
        if row["type"] == "message":
            payload["content"] = row["content"]
        elif row["type"] == "tool_call_finished":
            payload["result"] = results.get(payload.get("call_id"))
        elif row["type"] == "memory_snapshot" and row["seq"] in snapshots:
            snap = snapshots[row["seq"]]
            payload["messages"], payload["scratch"] = snap["messages"], snap["scratch"]


def _answers(db: Database, run_id: str, compacts: list[Any]) -> dict[Any, Any]:
    """The contents of the messages that compact rows keep their token texts in, by seq."""
    seqs = [c["msg"] for c in compacts if isinstance(c, dict) and type(c.get("msg")) is int]
    if not seqs:
        return {}
    marks = ", ".join("?" * len(seqs))
    return dict(
        db.execute(
            f"select seq, content from messages where run_id = ? and seq in ({marks})"
            " order by id desc",  # the first row of a seq wins, as in _rows_from
            [run_id, *seqs],
        ).fetchall()
    )


def read_events(
    db: Database, run_id: str, after_seq: int, upto: int = 2**62, limit: int = 2**62
) -> list[Row]:
    """Events of a run with ``after_seq < seq <= upto`` (from at least ``limit`` stored rows,
    when there are that many): ``{"seq", "type", "payload"}`` each, as published."""
    rows = _rows_from(db, run_id, after_seq, upto, limit + 1)
    _put_back(db, run_id, rows)
    answers = _answers(db, run_id, [r["payload"] for r in rows if r["type"] == token_runs.COMPACT])
    out: list[Row] = []
    for row in rows:
        if row["type"] == token_runs.COMPACT and isinstance(row["payload"], dict):
            content = answers.get(row["payload"].get("msg"))
            pieces = token_runs.expand(row["seq"], row["payload"], content)
        else:
            pieces = [{"seq": row["seq"], "type": row["type"], "payload": row["payload"]}]
        out.extend(p for p in pieces if after_seq < p["seq"] <= upto)
    return out


def events_after(
    db: Database, run_id: str, after_seq: int, limit: int = 1000
) -> list[dict[str, Any]]:
    """The events after ``after_seq``: at least ``limit`` of them when there are that many
    (a compact row gives all its pieces), so a caller stops when it gets fewer."""
    return read_events(db, run_id, after_seq, limit=limit)


def draft_text(db: Database, run_id: str) -> str:
    """Assistant text streamed since the last complete message (for a page opened mid-run)."""
    last_message = db.execute(
        "select coalesce(max(seq), 0) from events where run_id = ? and type = 'message'",
        [run_id],
    ).fetchone()[0]
    rows = db.query(
        "select seq, type, payload from events where run_id = ? and seq > ?"
        " and type in ('token', ?) order by seq",
        [run_id, last_message, token_runs.COMPACT],
    )
    texts: list[str] = []
    for row in rows:
        payload = _decode(row["payload"])
        if not isinstance(payload, dict):
            continue
        if row["type"] == token_runs.COMPACT:
            content = _answers(db, run_id, [payload]).get(payload.get("msg"))
            pieces = [p["payload"] for p in token_runs.expand(row["seq"], payload, content)]
        else:
            pieces = [payload]
        texts.extend(str(p.get("text") or "") for p in pieces if p.get("type") == "token")
    return "".join(texts)
