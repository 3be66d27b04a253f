"""Read the messages of a model call: span attributes, span events or log records.

The same conversation arrives in several forms, and each reader returns the
studio's message shape (role, content, tool_calls, tool_call_id, name):

- OpenInference: ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.*``,
  or ``input.value`` / ``output.value``;
- GenAI JSON messages: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
  ``gen_ai.system_instructions`` (role + typed parts), on a span or on one
  ``gen_ai.client.inference.operation.details`` log event per call;
- older GenAI: ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` attributes,
  and one event per message (``gen_ai.user.message`` … ``gen_ai.choice``) as
  span events or log records.

Every value is untrusted: shapes are checked, text normalised.
"""

from __future__ import annotations

import json
from typing import Any

from app.ingest import normalize
from app.ingest.decode import SpanRecord
from app.ingest.semconv import as_dict, as_text, indexed, json_of


def _message(
    role: Any,
    content: Any,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: Any = None,
    name: Any = None,
) -> dict[str, Any]:
    return {
        "role": normalize.name(role or "user", 50),
        "content": normalize.text(as_text(content)),
        "tool_calls": tool_calls or [],
        "tool_call_id": normalize.name(tool_call_id) if tool_call_id else None,
        "name": normalize.name(name, 200) if name else None,
    }


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return {
        "id": normalize.name(call_id or ""),
        "type": "function",
        "function": {"name": normalize.name(name or "", 200), "arguments": args},
    }


def _openinference_messages(a: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    out = []
    for item in indexed(a, prefix):
        content = item.get("message.content")
        if content is None:  # multi-part content: message.contents.N.message_content.text
            parts = indexed(item, "message.contents")
            content = "".join(str(p.get("message_content.text") or "") for p in parts)
        calls = [
            _tool_call(
                c.get("tool_call.id"),
                c.get("tool_call.function.name"),
                c.get("tool_call.function.arguments"),
            )
            for c in indexed(item, "message.tool_calls")
        ]
        out.append(
            _message(
                item.get("message.role"),
                content,
                calls,
                item.get("message.tool_call_id"),
                item.get("message.name"),
            )
        )
    return out


def _genai_parts_messages(raw: Any) -> list[dict[str, Any]]:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages``: role + typed parts."""
    value = json_of(raw)
    if not isinstance(value, list):
        return []
    out = []
    for msg in value:
        if not isinstance(msg, dict):
            continue
        texts, calls, call_id = [], [], None
        parts = msg.get("parts")
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                texts.append(as_text(part.get("content")))
            elif kind == "tool_call":
                calls.append(_tool_call(part.get("id"), part.get("name"), part.get("arguments")))
            elif kind == "tool_call_response":
                call_id = part.get("id")
                texts.append(as_text(part.get("response")))
        if "content" in msg and not texts:
            texts.append(as_text(msg["content"]))
        out.append(_message(msg.get("role"), "".join(texts), calls, call_id, msg.get("name")))
    return out


_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
# The newer form: one event per call with the GenAI message attributes on it.
OPERATION_DETAILS = "gen_ai.client.inference.operation.details"


def _event_tool_calls(value: Any) -> list[dict[str, Any]]:
    """``tool_calls`` of an event body: ``[{id, type, function: {name, arguments}}]``."""
    calls = []
    for call in value if isinstance(value, list) else []:
        if isinstance(call, dict):
            function = as_dict(call.get("function"))
            calls.append(
                _tool_call(call.get("id"), function.get("name"), function.get("arguments"))
            )
    return calls


def event_messages(
    events: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages in GenAI events: span events or log records, in either form.

    - one event per message: ``gen_ai.user.message`` … ``gen_ai.tool.message``
      and ``gen_ai.choice``, content in the body (log records) or in a
      ``body``/``content`` attribute (older span events);
    - one ``gen_ai.client.inference.operation.details`` event per call, with
      ``gen_ai.input.messages`` / ``gen_ai.output.messages`` attributes.
    """
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for event in events:
        name = event.get("name")
        a = as_dict(event.get("attributes"))
        if name == OPERATION_DETAILS:
            event_in, event_out = _attribute_messages(a)
            inputs.extend(event_in)
            outputs.extend(event_out)
            continue
        body = event.get("body")
        if body is None:
            body = a.get("body") if "body" in a else a.get("content")
        body = json_of(body)
        if name in _MESSAGE_EVENTS:
            fields = body if isinstance(body, dict) else {"content": body}
            inputs.append(
                _message(
                    _MESSAGE_EVENTS[name],
                    fields.get("content"),
                    _event_tool_calls(fields.get("tool_calls")),
                    fields.get("id") or a.get("id"),
                )
            )
        elif name == "gen_ai.choice":
            message = body.get("message") if isinstance(body, dict) else None
            if isinstance(message, dict):
                outputs.append(
                    _message(
                        message.get("role") or "assistant",
                        message.get("content"),
                        _event_tool_calls(message.get("tool_calls")),
                    )
                )
            else:
                outputs.append(_message("assistant", body))
    return inputs, outputs


def log_event(row: dict[str, Any]) -> dict[str, Any]:
    """A stored log record as an event for :func:`messages_of`: name, attributes, body."""
    attributes = json_of(row.get("attributes"))
    attributes = attributes if isinstance(attributes, dict) else {}
    try:
        body = json.loads(row.get("body") or "null")
    except ValueError:
        body = None
    return {
        "name": row.get("event_name") or attributes.get("event.name") or "",
        "attributes": attributes,
        "body": body,
    }


def _input_value_messages(a: dict[str, Any]) -> list[dict[str, Any]]:
    value = json_of(a.get("input.value"))
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        return [
            _message(m.get("role"), m.get("content"), tool_call_id=m.get("tool_call_id"))
            for m in value["messages"]
            if isinstance(m, dict)
        ]
    if isinstance(value, str) and value:
        return [_message("user", value)]
    return []


def _attribute_messages(a: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages in span attributes: OpenInference, GenAI JSON messages, older GenAI prompts."""
    inputs = _openinference_messages(a, "llm.input_messages")
    outputs = _openinference_messages(a, "llm.output_messages")
    if not inputs:
        inputs = _genai_parts_messages(a.get("gen_ai.input.messages"))
        system = json_of(a.get("gen_ai.system_instructions"))
        if isinstance(system, list) and system:
            text = "".join(as_text(p.get("content")) for p in system if isinstance(p, dict))
            inputs.insert(0, _message("system", text))
    if not outputs:
        outputs = _genai_parts_messages(a.get("gen_ai.output.messages"))
    if not inputs:
        inputs = [_message(m.get("role"), m.get("content")) for m in indexed(a, "gen_ai.prompt")]
    if not outputs:
        outputs = [
            _message(m.get("role") or "assistant", m.get("content"))
            for m in indexed(a, "gen_ai.completion")
        ]
    return inputs, outputs


def messages_of(
    span: SpanRecord, logs: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(input messages, output messages) of an LLM span, whichever convention it uses.

    ``logs`` are the span's log records (see :func:`log_event`): where the
    GenAI conventions put content when it is not on the span.
    """
    a = span.attributes
    inputs, outputs = _attribute_messages(a)
    if not inputs or not outputs:
        event_in, event_out = event_messages([*span.events, *(logs or [])])
        inputs = inputs or event_in
        outputs = outputs or event_out
    if not inputs:
        inputs = _input_value_messages(a)
    if not outputs and a.get("output.value") not in (None, ""):
        outputs = [_message("assistant", a.get("output.value"))]
    return inputs, outputs
