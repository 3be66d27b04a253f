"""SQLite cells turned into what PostgreSQL keeps: text where SQLite kept BLOBs, no NULs.

SQLite keeps some JSON cells as BLOBs to save room, and PostgreSQL's text
columns take text only:

- an ``events.payload`` BLOB is "headless" (its ``type`` and ``at`` left to
  the row's columns, ``{}`` for a message its ``messages`` row rebuilds whole),
  packed when long (``app.store.event_log.event_cell``). On PostgreSQL the
  same event is stored as its full compact JSON text, with a message's content
  left to its ``messages`` row (``_moved``), as ``event_cell`` writes it there;
- any other BLOB is a packed JSON cell (span attributes…, ``packed_cells``), or
  bytes that read as text.

PostgreSQL text cannot hold U+0000 at all: it becomes U+FFFD (the replacement
character), so the row is kept rather than refused.
"""

from __future__ import annotations

import math
from typing import Any

from app.store import packed_cells
from app.store.event_log import MOVED, restore_payload
from app.store.rows import compact_json

NUL = "\x00"
REPLACEMENT = "\ufffd"


def event_payload(kind: str, at: float, cell: Any, message: list[Any]) -> Any:
    """The PostgreSQL ``events.payload`` of a SQLite one; ``message`` is the event's
    ``messages`` row (role, content, tool_calls, tool_call_id, name) or Nones."""
    if not isinstance(cell, bytes):
        return cell  # text: headed JSON already, as PostgreSQL stores it
    payload = restore_payload(kind, at, cell, message)
    if isinstance(payload, bytes):  # neither packed nor JSON: kept as the text it reads as
        return payload.decode("utf-8", "replace")
    if isinstance(payload, str):
        return payload
    if (
        kind == "message"
        and isinstance(payload, dict)
        and MOVED not in payload
        and isinstance(payload.get("content"), str)
        and message[0] is not None
    ):
        # Rebuilt from its messages row (``{}``): the content stays there, as
        # event_cell leaves it on PostgreSQL, and read_events puts it back.
        payload = {**payload, "content": None, MOVED: ["content"]}
    return compact_json(payload).decode()


def cell(value: Any, kind: str) -> Any:
    """``value`` as PostgreSQL's column of type ``kind`` takes it."""
    if isinstance(value, bytes):
        value = packed_cells.unpack(value) or value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if kind == "bigint" and isinstance(value, float) and math.isfinite(value):
        # SQLite keeps a fraction in an INTEGER column; PostgreSQL's cast rounds it.
        return round(value)
    return value
