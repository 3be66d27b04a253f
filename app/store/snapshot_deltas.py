"""Memory snapshots stored as what changed since the step before, and rebuilt whole on read.

The loop snapshots its whole memory (messages + scratch) at every step; the
messages only grow, so storing each snapshot whole made a run's storage grow
with the square of its length. A row of ``memory_snapshots`` is now either:

- whole (``kept`` is null): ``messages`` and ``scratch`` as they were, the
  shape of rows written before migration m0014 and of any step whose change
  could not be told as a delta (a step number out of order);
- a delta: the first ``kept`` messages of the previous step, then
  ``messages`` (those appended or changed); the previous scratch without the
  keys in ``scratch_removed``, with the keys in ``scratch`` set.

Either way, a message whose (long) content the run's ``messages`` table
holds is stored with that content null, and ``refs`` maps its index in
``messages`` to the seq of the message row that has it: the answer of a
model call is not kept a second time in its snapshot.

``fold`` rebuilds every step in order; a delta is written only when it
rebuilds the snapshot exactly (key order included).
"""

from __future__ import annotations

import collections
import json
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlite_utils import Database

from app.store.rows import compact_json, decode_json, encode_json

# A content shorter than this is stored as is: a reference would not be smaller.
MIN_REF = 64
# Runs whose latest step the writer keeps rebuilt, per connection (see last_memory).
REMEMBERED_RUNS = 64


@dataclass
class Memory:
    """A rebuilt step: its messages and scratch (as JSON values), and its step number."""

    step: int | None = None
    messages: list[Any] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def fold(rows: Iterable[Any], texts: dict[int, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Each stored row (in step order) as the whole snapshot it stands for.

    ``texts``: the contents of the run's messages that rows refer to, by seq
    (:func:`fold_run` reads them). A whole row reads exactly as stored (a
    corrupt cell stays the text it is); the steps after it build on what
    could be read of it.
    """
    memory = Memory()
    for raw in rows:
        row = decode_json(raw, "messages", "scratch", "scratch_removed", "refs")
        kept = row.pop("kept", None)
        removed = row.pop("scratch_removed", None)
        _put_contents(row["messages"], row.pop("refs", None), texts or {})
        if kept is None or not isinstance(kept, int):
            memory = Memory(row["step"], _as_list(row["messages"]), _as_dict(row["scratch"]))
        else:
            gone = set(removed) if isinstance(removed, list) else set()
            scratch = {k: v for k, v in memory.scratch.items() if k not in gone}
            scratch.update(_as_dict(row["scratch"]))
            messages = memory.messages[:kept] + _as_list(row["messages"])
            memory = Memory(row["step"], messages, scratch)
            row["messages"], row["scratch"] = messages, scratch
        yield row


def _put_contents(messages: Any, refs: Any, texts: dict[int, Any]) -> None:
    """Fill in the contents that a row keeps as references to the run's messages."""
    if not isinstance(messages, list) or not isinstance(refs, dict):
        return
    for index, seq in refs.items():
        i = int(index) if str(index).isdigit() else -1
        if 0 <= i < len(messages) and isinstance(messages[i], dict):
            messages[i] = {**messages[i], "content": texts.get(seq)}


def fold_run(db: Database, run_id: str, rows: Iterable[Any]) -> list[dict[str, Any]]:
    """:func:`fold` over a run's rows, with the message contents they refer to."""
    rows = [dict(r) for r in rows]
    seqs: set[int] = set()
    for row in rows:
        refs = decode_json(row, "refs").get("refs")
        if isinstance(refs, dict):
            seqs.update(v for v in refs.values() if type(v) is int)
    texts: dict[int, Any] = {}
    if seqs:
        marks = ", ".join("?" * len(seqs))
        texts = dict(
            db.execute(
                f"select seq, content from messages where run_id = ? and seq in ({marks})"
                " order by id desc",  # the first row of a seq wins
                [run_id, *sorted(seqs)],
            ).fetchall()
        )
    return list(fold(rows, texts))


def with_refs(
    messages: list[Any], find: Callable[[str], int | None]
) -> tuple[list[Any], dict[str, int]]:
    """``messages`` to store, with each long content that ``find`` locates in the run's
    messages (its seq) left out (null), and the references ``{index: seq}``."""
    stored, refs = [], {}
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        seq = find(content) if isinstance(content, str) and len(content) >= MIN_REF else None
        if seq is None:
            stored.append(message)
            continue
        stored.append({**message, "content": None})
        refs[str(i)] = seq
    return stored, refs


def _json_value(value: Any) -> Any:
    """``value`` as the JSON value a reader gets back (msgspec, or ``json`` for NaN and such)."""
    text = compact_json(value)
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


_ENCODE = msgspec.json.Encoder().encode


def _same(a: Any, b: Any) -> bool:
    """Whether two JSON values are one: ``==`` alone takes 1, 1.0 and true for the same.

    ``==`` first, which also tells NaN from null (msgspec writes both as null),
    then their JSON texts.
    """
    if a != b:
        return False
    try:
        return _ENCODE(a) == _ENCODE(b)
    except (TypeError, ValueError, OverflowError):
        return compact_json(a) == compact_json(b)


def delta(
    before: Memory, messages: list[Any], scratch: dict[str, Any]
) -> tuple[int, list[Any], dict[str, Any], list[str]] | None:
    """``(kept, changed messages, scratch set, scratch removed)`` from ``before`` to the new
    state, or None when only a whole row says it exactly."""
    old = before.messages
    kept = 0
    for message in messages:
        if kept >= len(old) or not _same(old[kept], message):
            break
        kept += 1
    changed = messages[kept:]
    set_keys = {
        k: v
        for k, v in scratch.items()
        if k not in before.scratch or not _same(before.scratch[k], v)
    }
    removed = [k for k in before.scratch if k not in scratch]
    rebuilt = {k: v for k, v in before.scratch.items() if k not in removed}
    rebuilt.update(set_keys)
    if list(rebuilt) != list(scratch):
        return None  # the keys moved about: a delta would not give their order back
    return kept, changed, set_keys, removed


# The latest step of the runs a connection wrote snapshots for, rebuilt: a run's next
# snapshot would otherwise read and rebuild every step before it (a run's snapshots
# would cost the square of its length). Checked against the stored latest step.
_REMEMBERED: weakref.WeakKeyDictionary[Database, collections.OrderedDict[str, Memory]] = (
    weakref.WeakKeyDictionary()
)


def _remember(db: Database, run_id: str, memory: Memory) -> None:
    runs = _REMEMBERED.setdefault(db, collections.OrderedDict())
    runs[run_id] = memory
    runs.move_to_end(run_id)
    while len(runs) > REMEMBERED_RUNS:
        runs.popitem(last=False)


def _remembered(db: Database, run_id: str) -> Memory | None:
    """The run's latest step as this connection wrote it, if it still is the latest stored.

    Steps are unique per run and only ever added (or deleted with their run), so
    the same latest step number means the same row; a write rolled back, another
    replica's write or a deleted run shows as another number.
    """
    runs = _REMEMBERED.get(db)
    memory = None if runs is None else runs.get(run_id)
    if memory is None:
        return None
    latest = db.execute(
        "select max(step) from memory_snapshots where run_id = ?", [run_id]
    ).fetchone()[0]
    return memory if latest is not None and latest == memory.step else None


def last_memory(db: Database, run_id: str) -> Memory:
    """The run's latest step rebuilt (an empty memory before its first snapshot)."""
    remembered = _remembered(db, run_id)
    if remembered is not None:
        return remembered
    rows = db.query(
        "select step, messages, scratch, kept, scratch_removed, refs from memory_snapshots"
        " where run_id = ? order by step",
        [run_id],
    )
    memory = Memory()
    for row in fold_run(db, run_id, rows):
        memory = Memory(row["step"], _as_list(row["messages"]), _as_dict(row["scratch"]))
    return memory


def message_finder(db: Database, run_id: str) -> Callable[[str], int | None]:
    """Finds a content among the run's messages: the seq of the latest with it, or None."""

    def find(content: str) -> int | None:
        found = db.execute(
            "select seq from messages where run_id = ? and content = ? order by seq desc limit 1",
            [run_id, content],
        ).fetchone()
        return found[0] if found else None

    return find


def insert_snapshot(
    db: Database,
    run_id: str,
    seq: int,
    at: float,
    event: dict[str, Any],
) -> None:
    """Store the snapshot ``event`` (number ``seq``) as a delta on the run's previous step,
    its long message contents as references to the run's messages."""
    # As JSON values: what a reader gets back, and what the delta compares.
    messages = _json_value(list(event.get("messages") or []))
    scratch = _json_value(event.get("scratch") or {})
    before = last_memory(db, run_id)
    step = event["step"]
    change = None
    latest = before.step is None or step > before.step
    if isinstance(scratch, dict) and latest:
        change = delta(before, messages, scratch) if before.step is not None else None
    row: dict[str, Any] = {
        "run_id": run_id,
        "seq": seq,
        "step": step,
        "label": event.get("label"),
        "message_count": len(messages),
        "at": at,
    }
    find = message_finder(db, run_id)
    if change is None:
        stored, refs = with_refs(messages, find)
        row |= {"messages": encode_json(stored), "scratch": encode_json(scratch)}
    else:
        kept, changed, set_keys, removed = change
        stored, refs = with_refs(changed, find)
        row |= {
            "messages": encode_json(stored),
            "scratch": encode_json(set_keys),
            "kept": kept,
            "scratch_removed": encode_json(removed),
        }
    if refs:
        row["refs"] = encode_json(refs)
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    db.execute(f"insert into memory_snapshots ({columns}) values ({marks})", list(row.values()))
    if latest and isinstance(step, int) and isinstance(scratch, dict):
        _remember(db, run_id, Memory(step, messages, scratch))
