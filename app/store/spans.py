"""Spans as OpenTelemetry has them, for ingested and native runs alike.

An ingested span is stored whole as it arrived (``app.ingest.otlp``). A
native run records the same shape from its events: an agent root span
(``invoke_agent``), one ``chat`` span per model call and one
``execute_tool`` span per tool call, with attributes named by the
OpenTelemetry GenAI semantic conventions. So the trace view, the spans API
and every export read one shape, whichever way a run came in.

Native ids are derived from the run id (a hash), so a model or tool span can
name its agent parent without a lookup, and the same run always has the
same trace id.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from sqlite_utils import Database

from app.store import packed_cells
from app.store.backend import is_postgres
from app.store.rows import encode_json

AGENT_SERVICE = "agentop-studio"
SCOPE = {"name": "agentop", "version": "0.1.0", "attributes": {}}
RESOURCE = {"service.name": AGENT_SERVICE}
AGENT_NAME = "agentop"
# The GenAI conventions' well-known provider names, where the studio's differ.
_GENAI_PROVIDERS = {"mistral": "mistral_ai"}
# Run parameters that have a GenAI request attribute.
_REQUEST_PARAMS = ("temperature", "max_tokens", "top_p", "seed")

COLUMNS = (
    "run_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "kind",
    "span_kind",
    "name",
    "start_at",
    "end_at",
    "status",
    "status_message",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "attributes",
    "events",
    "links",
    "resource",
    "scope",
)
_JSON_COLUMNS = {"attributes", "events", "links", "resource", "scope"}
_JSON = msgspec.json.Encoder()
# Packed cells need readers that unpack them (``app.store.rows.decode_json``).
PACK_CELLS = True
_INSERT = (
    f"insert into spans ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))})"
    " on conflict (run_id, span_id) do nothing"
)


def _values(row: dict[str, Any]) -> list[Any]:
    return [
        encode_json(row.get(c)) if c in _JSON_COLUMNS and row.get(c) is not None else row.get(c)
        for c in COLUMNS
    ]


def insert_span(db: Database, row: dict[str, Any]) -> bool:
    """Store one span (JSON columns given as values); False when the run has it already."""
    return db.execute(_INSERT, _values(row)).rowcount > 0


def insert_spans(db: Database, rows: list[dict[str, Any]]) -> None:
    """Store many spans with one prepared statement (ingest); those already stored are skipped.

    JSON cells come as values, or already as stored (``stored_cell``: ingest
    prepares them on its decoding thread, off the writer).
    """
    values = [_stored_values(row) for row in rows]
    if is_postgres(db):
        # Packed cells are SQLite's way to keep spans small; PostgreSQL compresses long
        # values itself (TOAST), and its text columns take text only.
        values = [[_unpacked(v) for v in row] for row in values]
    db.conn.executemany(_INSERT, values)


def _unpacked(value: Any) -> Any:
    return (packed_cells.unpack(value) or value.decode()) if isinstance(value, bytes) else value


def _stored_values(row: dict[str, Any]) -> list[Any]:
    values = []
    for c in COLUMNS:
        value = row.get(c)
        if c in _JSON_COLUMNS and not isinstance(value, str | bytes):
            value = stored_cell(value)
        values.append(value)
    return values


def stored_cell(value: Any) -> str | bytes | None:
    """A JSON column's cell as ingest stores it: compact JSON (no spaces after separators),
    packed (``packed_cells``) once readers unpack (``PACK_CELLS``).

    msgspec encodes several times faster than ``json.dumps``; the values are
    plain JSON already (ingest normalised them, ``app.ingest.normalize``).
    """
    if value is None:
        return None
    text = _JSON.encode(value).decode()
    return packed_cells.pack(text) if PACK_CELLS else text


def trace_id_of(run_id: str) -> str:
    return hashlib.blake2b(f"trace/{run_id}".encode(), digest_size=16).hexdigest()


def span_id_of(run_id: str, key: str) -> str:
    """The span id of a native run's step ``key`` ("agent", "llm:SEQ", "tool:CALL_ID")."""
    return hashlib.blake2b(f"{run_id}/{key}".encode(), digest_size=8).hexdigest()


def genai_provider(provider: str) -> str:
    return _GENAI_PROVIDERS.get(provider, provider)


def request_attributes(params: dict[str, Any]) -> dict[str, Any]:
    """``gen_ai.request.*`` attributes of a run's generation parameters."""
    return {
        f"gen_ai.request.{key}": params[key]
        for key in _REQUEST_PARAMS
        if params.get(key) is not None
    }


def _native(run_id: str, key: str, span_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "trace_id": trace_id_of(run_id),
        # An event that names its span (ingested) keeps that id.
        "span_id": span_id or span_id_of(run_id, key),
        "resource": RESOURCE,
        "scope": SCOPE,
        "events": [],
        "links": [],
        "status_message": None,
        **fields,
    }


def agent_span(
    run_id: str, at: float, event: dict[str, Any], session: str | None
) -> dict[str, Any]:
    params = event.get("params")
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": AGENT_NAME,
        "gen_ai.provider.name": genai_provider(event["provider"]),
        "gen_ai.request.model": event["model"],
        **request_attributes(params if isinstance(params, dict) else {}),
    }
    if session:
        attributes["gen_ai.conversation.id"] = session
    return _native(
        run_id,
        "agent",
        parent_span_id=None,
        kind="agent",
        span_kind="internal",
        name=f"invoke_agent {AGENT_NAME}",
        start_at=at,
        end_at=None,
        status="running",
        attributes=attributes,
    )


def llm_span(
    run_id: str, seq: int, at: float, event: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    failed = event.get("status") == "error" or bool(event.get("error"))
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": genai_provider(event["provider"]),
        "gen_ai.request.model": params.get("model") or event["model"],
        "gen_ai.response.model": event["model"],
        **request_attributes(params),
        "agentop.round": event.get("round"),
    }
    if event.get("input_tokens") is not None:
        attributes["gen_ai.usage.input_tokens"] = event["input_tokens"]
    if event.get("output_tokens") is not None:
        attributes["gen_ai.usage.output_tokens"] = event["output_tokens"]
    if event.get("finish_reason"):
        attributes["gen_ai.response.finish_reasons"] = [event["finish_reason"]]
    if event.get("cost_reason"):
        attributes["agentop.cost_reason"] = event["cost_reason"]
    if failed:
        attributes["error.type"] = "model_call_failed"
    return _native(
        run_id,
        f"llm:{seq}",
        event.get("span_id"),
        parent_span_id=span_id_of(run_id, "agent"),
        kind="llm",
        span_kind="client",
        name=f"chat {event['model']}",
        start_at=at - event["latency_ms"] / 1000,
        end_at=at,
        status="error" if failed else "ok",
        status_message=(event.get("error") or "the model call failed") if failed else None,
        input_tokens=event.get("input_tokens"),
        output_tokens=event.get("output_tokens"),
        cost_usd=event.get("cost_usd"),
        attributes=attributes,
    )


def tool_span(run_id: str, at: float, event: dict[str, Any]) -> dict[str, Any]:
    error = event.get("error")
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": event["name"],
        "gen_ai.tool.call.id": event["call_id"],
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.arguments": encode_json(event.get("arguments")),
    }
    if error is not None:
        attributes["error.type"] = "tool_error"
    return _native(
        run_id,
        f"tool:{event['call_id']}",
        event.get("span_id"),
        parent_span_id=span_id_of(run_id, "agent"),
        kind="tool",
        span_kind="internal",
        name=f"execute_tool {event['name']}",
        start_at=at - event["latency_ms"] / 1000,
        end_at=at,
        status="ok" if error is None else "error",
        status_message=error,
        cost_usd=event.get("cost_usd"),
        attributes=attributes,
    )
