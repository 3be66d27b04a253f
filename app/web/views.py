"""View models shared by full pages and live partials, so both render alike."""

from __future__ import annotations

from typing import Any

from app.store.live import LiveEvent


def tool_call_view(payload: dict[str, Any], finished: bool) -> dict[str, Any]:
    status = "running"
    if finished:
        status = "ok" if payload.get("error") is None else "error"
    return {
        "call_id": payload.get("call_id"),
        "name": payload.get("name"),
        "arguments": payload.get("arguments") or {},
        "result": payload.get("result"),
        "error": payload.get("error"),
        "latency_ms": payload.get("latency_ms"),
        "status": status,
        "cost_lines": payload.get("cost_lines") or [],
    }


def event_context(event: LiveEvent) -> dict[str, Any]:
    """Template context of the partial named after ``event.type``."""
    # A stored payload is JSON of any shape; the partials expect an object.
    payload = event.payload if isinstance(event.payload, dict) else {}
    context: dict[str, Any] = {
        "run": event.run,
        "run_id": event.run_id,
        "event": payload,
        "seq": event.seq,
        "live": True,
    }
    if event.type == "message":
        context["m"] = payload
    elif event.type in ("token", "tool_call_delta"):
        context["text"] = payload.get("text", "")
    elif event.type in ("tool_call_started", "tool_call_finished"):
        context["tc"] = tool_call_view(payload, event.type == "tool_call_finished")
    return context


def thread_items(detail: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Messages and tool calls in the order they happened (tool results live on the cards)."""
    items: list[tuple[int, str, dict[str, Any]]] = []
    for m in detail["messages"]:
        if m["role"] != "tool":
            items.append((m["seq"], "message", m))
    for tc in detail["tool_calls"]:
        items.append((tc["seq"], "tool_call", tc))
    items.sort(key=lambda item: item[0] if isinstance(item[0], int) else 0)
    return [(kind, value) for _, kind, value in items]
