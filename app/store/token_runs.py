"""Compact storage of streamed pieces: one row for a model call's tokens, not one per token.

``token`` and ``tool_call_delta`` events are written as they stream: one row
each when they come one at a time, and when the recorder hands over several
at once (a model faster than the commits), one compact row for all of them
but the last (``piece_rows``); a follower that resumes mid-answer reads
either. Once the call's answer is complete (at the ``message`` that follows its
``llm_call_finished``, or at the run's end after a cut-off stream) the run of
consecutive piece rows before it is replaced by ONE row of type ``deltas``
whose ``seq`` is the first piece's and whose payload holds every piece,
column by column, so that :func:`expand` gives back the exact events: same
seq, type and payload, ``at`` to the last bit. At the message, not at
``llm_call_finished``: the message's content is then stored, and when the
token pieces join up to it their texts are kept as lengths into it.

Payload of a ``deltas`` row:

- ``n``: number of pieces (their seqs are ``seq .. seq + n - 1``);
- ``at``: the first piece's time; ``gaps``: each next time as a whole number
  of ``math.ulp(at)`` after the one before (exact, and ~6 digits for a 20 ms
  gap), or ``ats``: every time as is when that would not be exact;
- ``text``: each piece's text; with ``msg`` (the seq of the message whose
  content the token pieces join up to), a token piece's text is its length,
  a slice of that content;
- ``segs``: ``[template, count, first_tokens]`` runs of pieces that share
  their other fields; ``run_output_tokens`` counts up by one inside a run
  (the loop's live estimate), or is the same null/absent for all of it.
  A template is the piece's payload with its varying fields set to null, so
  key order and presence come back as they were.
"""

from __future__ import annotations

import json
import math
from operator import itemgetter
from typing import Any, cast

from sqlite_utils import Database

from app.store.rows import compact_json, encode_json

PIECES = frozenset({"token", "tool_call_delta"})
# One event row (app.store.events writes the others with it).
INSERT_EVENT = "insert into events (run_id, seq, type, at, payload) values (?, ?, ?, ?, ?)"
COMPACT = "deltas"
# Fields that vary piece by piece, kept in columns of their own.
_VARYING = ("at", "text", "run_output_tokens")
# Events a backward scan from a call's message may step over: the call's end,
# and a model that loads mid-stream (a marker between pieces).
_STEP_OVER = PIECES | {"model_loading", "model_loaded", "llm_call_finished"}
# Pieces of one call are bounded by its max_tokens; this bounds a scan of odd data.
MAX_SCAN = 100_000


def piece_json(payload: dict[str, Any]) -> str:
    """The JSON text of a piece's payload, as ``encode_json`` gives it back when read."""
    return compact_json(payload).decode()


def piece_rows(run_id: str, events: list[tuple[int, dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """The ``events`` rows of consecutive streamed pieces ``(seq, payload)`` (``INSERT_EVENT``'s
    values): a run of three or more pieces is one compact row, but for its last piece.

    A fast model hands the writer a hundred pieces at once: one row of them costs a
    third of a hundred rows to write, and a tenth to delete when the call is folded.
    The last piece keeps a row of its own because ``runs.last_seq`` names it (the
    watchdog reads that row's time). A compact row written here has no ``msg``
    (its texts are in it); the call's fold rewrites it with the others.
    """
    rows: list[tuple[Any, ...]] = []
    group: list[tuple[int, dict[str, Any]]] = []
    for seq, e in events[:-1]:
        if compactable(e["type"], e):
            group.append((seq, e))
            continue
        _add_compact(rows, run_id, group)
        rows.append((run_id, seq, e["type"], float(e["at"]), piece_json(e)))
    _add_compact(rows, run_id, group)
    seq, e = events[-1]
    rows.append((run_id, seq, e["type"], float(e["at"]), piece_json(e)))
    return rows


def _add_compact(
    rows: list[tuple[Any, ...]], run_id: str, group: list[tuple[int, dict[str, Any]]]
) -> None:
    """Append ``group``'s pieces to ``rows`` (one compact row if they are several); empty it."""
    if len(group) >= 2:
        first, payload = group[0]
        compact = encode_json(encode([p for _, p in group]))
        rows.append((run_id, first, COMPACT, payload["at"], compact))
    else:
        rows.extend((run_id, q, e["type"], float(e["at"]), piece_json(e)) for q, e in group)
    group.clear()


def _template(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if k in _VARYING else v) for k, v in payload.items()}


def _times(ats: list[float]) -> dict[str, Any]:
    """The times as exact whole-ulp gaps from the first, else as they are."""
    unit = math.ulp(ats[0])
    gaps, at = [], ats[0]
    for target in ats[1:]:
        gap = round((target - at) / unit)
        at += gap * unit
        if at != target:
            return {"ats": ats}
        gaps.append(gap)
    return {"at": ats[0], "gaps": gaps}


def encode(
    payloads: list[dict[str, Any]], content: Any = None, message_seq: int | None = None
) -> dict[str, Any]:
    """The compact payload of consecutive piece payloads (see the module docstring);
    ``content`` is that of message ``message_seq``, which the token pieces may join up to."""
    segs: list[list[Any]] = []
    # A piece continues the last run of pieces when its keys come in the same order and
    # its other fields are equal: compared as tuples (itemgetter) rather than by building
    # each piece's template, a few times cheaper per piece (a fold encodes 200 of them).
    keys: tuple[str, ...] | None = None  # those of the piece before
    get_fixed: Any = None
    seg_keys, fixed = None, None  # those of the last run of pieces, and its other fields
    for payload in payloads:
        tokens = payload.get("run_output_tokens")
        shape = tuple(payload)
        if shape != keys:
            keys = shape
            names = [k for k in shape if k not in _VARYING]
            get_fixed = itemgetter(*names) if names else _nothing
        values = get_fixed(payload)
        if shape == seg_keys and values == fixed:
            last = segs[-1]
            # run_output_tokens counts up by one from the run's first piece, or stays null.
            start = last[2]
            if (
                tokens is None
                if start is None
                else type(tokens) is int and tokens == start + last[1]
            ):
                last[1] += 1
                continue
        seg_keys, fixed = shape, values
        segs.append([_template(payload), 1, tokens])
    texts: list[Any] = [p.get("text") for p in payloads]
    by_length: dict[str, Any] = {}
    # _join_up's test, in C loops: every text a string, the token pieces' joined the content.
    if message_seq is not None and isinstance(content, str) and set(map(type, texts)) == {str}:
        if {p["type"] for p in payloads} == {"token"}:
            if "".join(texts) == content:
                texts, by_length = list(map(len, texts)), {"msg": message_seq}
        elif _join_up(payloads, content):
            texts = [
                len(t) if p["type"] == "token" else t for p, t in zip(payloads, texts, strict=True)
            ]
            by_length = {"msg": message_seq}
    return {
        "n": len(payloads),
        **_times([float(p["at"]) for p in payloads]),
        "text": texts,
        **by_length,
        "segs": segs,
    }


def _nothing(_: Any) -> tuple[()]:
    return ()


def _join_up(payloads: list[dict[str, Any]], content: str) -> bool:
    """Whether the token pieces' texts, joined, are ``content`` (and lengths can stand for them)."""
    if not all(isinstance(p.get("text"), str) for p in payloads):
        return False
    return "".join(p["text"] for p in payloads if p["type"] == "token") == content


def expand(seq: int, compact: dict[str, Any], content: Any = None) -> list[dict[str, Any]]:
    """The events a ``deltas`` row stands for: ``{"seq", "type", "payload"}`` each;
    ``content`` is that of the message ``compact["msg"]`` names, if it names one."""
    if "ats" in compact:
        ats = [float(a) for a in compact["ats"]]
    else:
        at, unit = float(compact["at"]), math.ulp(float(compact["at"]))
        ats = [at]
        for gap in compact["gaps"]:
            at += gap * unit
            ats.append(at)
    texts = compact["text"]
    if "msg" in compact:
        texts, source, at_char = list(texts), content if isinstance(content, str) else "", 0
        for i, text in enumerate(texts):
            if type(text) is int:  # a token piece: the next ``text`` characters of the message
                texts[i], at_char = source[at_char : at_char + text], at_char + text
    out: list[dict[str, Any]] = []
    for template, count, tokens in compact["segs"]:
        for offset in range(count):
            i = len(out)
            payload = dict(template)
            payload["at"] = ats[i]
            if "text" in template:
                payload["text"] = texts[i]
            if "run_output_tokens" in template:
                # Only a whole-number count counts up; null (or any other value) stays.
                counts = offset and type(tokens) is int
                payload["run_output_tokens"] = tokens + offset if counts else tokens
            out.append({"seq": seq + i, "type": payload.get("type"), "payload": payload})
    return out


def piece_payload(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None  # a corrupt row stays as it is


def compactable(kind: str, payload: Any) -> bool:
    """A piece whose payload :func:`expand` gives back exactly."""
    return (
        kind in PIECES
        and isinstance(payload, dict)
        and payload.get("type") == kind
        and type(payload.get("at")) is float
        and math.isfinite(payload["at"])  # the times are kept as gaps from the first
        and "text" in payload
    )


def coalesce_before(db: Database, run_id: str, seq: int, content: Any = None) -> int:
    """Replace the piece rows before event ``seq`` by compact rows; the pieces folded.

    Walks back from ``seq`` over the call's end, pieces and model load
    markers only, so the work is one model call's pieces, whatever the run's
    length. Consecutive pieces become one row; a piece that could not be
    rebuilt exactly stays a row of its own. ``content``: event ``seq`` is a
    message with this content (the call's answer).
    """
    groups: list[list[tuple[int, dict[str, Any]]]] = [[]]
    stored = [0]  # rows each group's pieces come from
    rows = db.execute(
        "select seq, type, payload from events where run_id = ? and seq < ?"
        " order by seq desc limit ?",
        [run_id, seq, MAX_SCAN],
    )
    try:
        for row_seq, kind, text in rows:
            if kind == COMPACT:
                # Pieces the recorder wrote as one row while they streamed (no ``msg``:
                # a folded call's row has one, or is behind the call's message).
                streamed = piece_payload(text)
                if not isinstance(streamed, dict) or "msg" in streamed:
                    break
                groups[-1].extend(
                    (e["seq"], e["payload"]) for e in reversed(expand(row_seq, streamed))
                )
                stored[-1] += 1
                continue
            if kind not in _STEP_OVER:
                break
            payload = piece_payload(text) if kind in PIECES else None
            if not compactable(kind, payload):
                if groups[-1]:
                    groups.append([])
                    stored.append(0)
                continue
            groups[-1].append((row_seq, cast(dict[str, Any], payload)))
            stored[-1] += 1
    finally:
        rows.close()  # stopped early: the rows before the call are not read
    kept = [(g, n) for g, n in zip(groups, stored, strict=True) if g]
    # The answer's text is kept by length only when one row holds all of its pieces.
    message = (content, seq) if len(kept) == 1 else (None, None)
    folded = 0
    for group, count in kept:
        if count == 1 and message[0] is None:
            continue  # one row already, and nothing to gain by writing it again
        group.reverse()
        folded += fold_group(db, run_id, group, *message)
    return folded


def fold_written(
    db: Database,
    run_id: str,
    pieces: list[tuple[int, dict[str, Any]]],
    content: Any = None,
    message_seq: int | None = None,
) -> int | None:
    """Fold consecutive pieces ``(seq, payload)`` as the recorder wrote them (``piece_rows``),
    without reading them back; None (nothing changed) unless they are still those rows."""
    if len(pieces) < 2 or not all(compactable(p["type"], p) for _, p in pieces):
        return None
    first, last = pieces[0][0], pieces[-1][0]
    if last - first + 1 != len(pieces):
        return None
    # Deleted first and counted by the delete (one pass over the rows instead of a count,
    # then a delete); a range that is not all the pieces' rows any more is put back.
    db.conn.execute("SAVEPOINT fold")
    deleted = db.conn.execute(
        "delete from events where run_id = ? and seq between ? and ?"
        " and (type in ('token', 'tool_call_delta')"
        "  or (type = 'deltas' and json_extract(payload, '$.msg') is null))"
        # cast: PostgreSQL's json_extract gives text, and a CASE has one type.
        " returning case when type = 'deltas' then cast(json_extract(payload, '$.n') as integer)"
        " else 1 end",
        [run_id, first, last],
    ).fetchall()
    if sum(n if type(n) is int else -len(pieces) for (n,) in deleted) != len(pieces):
        db.conn.execute("ROLLBACK TO fold")
        db.conn.execute("RELEASE fold")
        return None
    db.conn.execute("RELEASE fold")
    _insert_compact(db, run_id, pieces, content, message_seq)
    return len(pieces)


def fold_group(
    db: Database,
    run_id: str,
    group: list[tuple[int, dict[str, Any]]],
    content: Any = None,
    message_seq: int | None = None,
) -> int:
    """Replace consecutive piece rows ``(seq, payload)`` (in seq order) by one compact row;
    ``content`` is that of the message ``message_seq`` that followed them, if any."""
    if len(group) < 2:
        return 0  # a lone piece is as small as it gets
    first = group[0][0]
    db.execute(
        "delete from events where run_id = ? and seq between ? and ?",
        [run_id, first, group[-1][0]],
    )
    _insert_compact(db, run_id, group, content, message_seq)
    return len(group)


def _insert_compact(
    db: Database,
    run_id: str,
    group: list[tuple[int, dict[str, Any]]],
    content: Any,
    message_seq: int | None,
) -> None:
    compact = encode([p for _, p in group], content, message_seq)
    row = [run_id, group[0][0], COMPACT, group[0][1]["at"], encode_json(compact)]
    db.conn.execute(INSERT_EVENT, row)
