"""Read what a span says about an agent step, from GenAI or OpenInference attributes.

Two vocabularies describe LLM calls in traces:

- OpenTelemetry GenAI semantic conventions: ``gen_ai.operation.name``,
  ``gen_ai.request.model`` / ``gen_ai.response.model``, ``gen_ai.provider.name``
  (formerly ``gen_ai.system``), ``gen_ai.usage.input_tokens`` /
  ``output_tokens``, ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
  ``gen_ai.system_instructions`` (JSON), the older ``gen_ai.prompt.N.*`` /
  ``gen_ai.completion.N.*`` attributes and ``gen_ai.*.message`` span events,
  ``gen_ai.tool.name`` / ``gen_ai.tool.call.id`` / ``.arguments`` / ``.result``.
- OpenInference: ``openinference.span.kind`` (LLM, TOOL, AGENT, CHAIN…),
  ``llm.model_name``, ``llm.provider``, ``llm.token_count.prompt`` /
  ``completion``, ``llm.input_messages.N.message.*`` /
  ``llm.output_messages.N.message.*``, ``input.value`` / ``output.value``,
  ``tool.name`` / ``tool.parameters``.

Each reader tries the conventions in turn and returns plain values.
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.ingest import normalize
from app.ingest.decode import SpanRecord
from app.ingest.jsonbody import JSONBodyError, load_json

LLM, TOOL, AGENT, OTHER = "llm", "tool", "agent", "other"
_OI_KINDS = {"LLM": LLM, "TOOL": TOOL, "AGENT": AGENT, "CHAIN": AGENT}
_GENAI_OPS = {
    "chat": LLM,
    "text_completion": LLM,
    "generate_content": LLM,
    "completion": LLM,
    "execute_tool": TOOL,
    "invoke_agent": AGENT,
    "create_agent": AGENT,
}
_PROVIDERS = {"mistral_ai": "mistral", "mistralai": "mistral", "mistral": "mistral"}
# Bounded: int() of a 5000-digit index would raise (and no list is that long).
_INDEXED = re.compile(r"^(\d{1,9})\.(.+)$")


def kind_of(span: SpanRecord) -> str:
    a = span.attributes
    oi = str(a.get("openinference.span.kind") or "").upper()
    if oi:
        return _OI_KINDS.get(oi, OTHER)
    op = str(a.get("gen_ai.operation.name") or "").lower()
    if op:
        return _GENAI_OPS.get(op, OTHER)
    if "gen_ai.tool.name" in a or "tool.name" in a:
        return TOOL
    if any(k in a for k in ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")):
        return LLM
    # GenAI span names are "{operation} {target}": the name says it when no attribute does.
    if any(k.startswith("gen_ai.") for k in a):
        return _GENAI_OPS.get(span.name.split(" ", 1)[0].lower(), OTHER)
    return OTHER


def json_of(value: Any) -> Any:
    """Text that looks like a JSON object or array, parsed; anything else as it is.

    Attribute text is untrusted JSON: parsed with the same depth limit and
    text cleaning as a request body.
    """
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return load_json(value.encode())
        except JSONBodyError:
            return value
    return value


def _dict(value: Any) -> dict[str, Any]:
    """``value`` if it is an object, else an empty one (untrusted shapes)."""
    return value if isinstance(value, dict) else {}


def _first(a: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = a.get(key)
        if value not in (None, ""):
            return value
    return None


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def indexed(a: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.0.x = 1, prefix.1.x = 2`` → ``[{"x": 1}, {"x": 2}]`` (OpenInference flattening)."""
    items: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in a.items():
        if key.startswith(start):
            match = _INDEXED.match(key[len(start) :])
            if match:
                items.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [items[i] for i in sorted(items)]


def model_of(span: SpanRecord) -> str:
    a = span.attributes
    return normalize.name(
        _first(a, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name") or "unknown",
        200,
    )


def provider_of(span: SpanRecord) -> str:
    a = span.attributes
    raw = normalize.name(
        _first(a, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system") or "",
        200,
    )
    return _PROVIDERS.get(raw.lower(), raw.lower() or "otlp")


def usage_of(span: SpanRecord) -> tuple[int | None, int | None]:
    """(input, output) tokens, each None when the span reports none (unknown, not 0)."""
    a = span.attributes
    inp = _first(
        a, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"
    )
    out = _first(
        a,
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
    )
    return normalize.count(inp), normalize.count(out)


def params_of(span: SpanRecord) -> dict[str, Any]:
    a = span.attributes
    params = json_of(a.get("llm.invocation_parameters"))
    # Instrumentors list every SDK parameter, unset ones as "".
    params = (
        {k: v for k, v in params.items() if v not in ("", None)} if isinstance(params, dict) else {}
    )
    for key in ("temperature", "max_tokens", "top_p"):
        value = a.get(f"gen_ai.request.{key}")
        if value is not None:
            params.setdefault(key, value)
    return params


def finish_reason_of(span: SpanRecord) -> str | None:
    reasons = _first(span.attributes, "gen_ai.response.finish_reasons", "llm.finish_reason")
    if isinstance(reasons, list):
        return normalize.name(reasons[0], 100) if reasons else None
    return normalize.name(reasons, 100) if reasons else None


def agent_name_of(span: SpanRecord) -> str | None:
    value = _first(span.attributes, "gen_ai.agent.name", "agent.name")
    return normalize.name(value, 200) if value else None


def _definition(raw: Any) -> dict[str, Any] | None:
    """One tool definition as the chat API's ``{"type": "function", "function": {...}}``."""
    value = json_of(raw)
    if not isinstance(value, dict):
        return None
    function = _dict(value.get("function")) or value
    name = function.get("name")
    if not name:
        return None
    parameters = json_of(function.get("parameters"))
    spec: dict[str, Any] = {"name": normalize.name(name, 200)}
    if function.get("description"):
        spec["description"] = normalize.text(as_text(function["description"]), 10_000)
    spec["parameters"] = parameters if isinstance(parameters, dict) else {}
    return {"type": "function", "function": spec}


def tool_definitions_of(span: SpanRecord) -> list[dict[str, Any]]:
    """The tools offered to the model: ``gen_ai.tool.definitions`` or ``llm.tools.N.tool.json_schema``."""
    a = span.attributes
    raw = json_of(a.get("gen_ai.tool.definitions"))
    items = (
        raw
        if isinstance(raw, list)
        else [t.get("tool.json_schema") for t in indexed(a, "llm.tools")]
    )
    return [d for d in (_definition(item) for item in items) if d is not None]


def session_of(span: SpanRecord) -> str | None:
    value = _first(span.attributes, "session.id", "gen_ai.conversation.id")
    return normalize.name(value, 200) if value else None


# --- messages --------------------------------------------------------------


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
            function = _dict(call.get("function"))
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
        a = _dict(event.get("attributes"))
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


# --- tools and agents ---------------------------------------------------------


def tool_of(span: SpanRecord) -> dict[str, Any]:
    a = span.attributes
    raw_args = _first(a, "gen_ai.tool.call.arguments", "tool.parameters", "input.value")
    args = json_of(raw_args)
    if not isinstance(args, dict):
        args = {} if args in (None, "") else {"input": args}
    result = _first(a, "gen_ai.tool.call.result", "output.value")
    return {
        "call_id": normalize.name(_first(a, "gen_ai.tool.call.id", "tool_call.id") or span.span_id),
        "name": normalize.name(_first(a, "gen_ai.tool.name", "tool.name") or span.name, 200),
        "arguments": args,
        "result": None if result is None else as_text(result),
        "error": error_of(span),
    }


def error_of(span: SpanRecord) -> str | None:
    if not span.error:
        return None
    for event in span.events:
        if event["name"] == "exception":
            a = event["attributes"]
            kind, message = a.get("exception.type"), a.get("exception.message")
            if kind or message:
                return f"{kind}: {message}" if kind else str(message)
    return span.status_message or "error"


def io_of(span: SpanRecord) -> tuple[str | None, str | None]:
    """(input, output) text of an agent or chain span."""
    a = span.attributes
    inp, out = a.get("input.value"), a.get("output.value")
    return (None if inp is None else as_text(inp), None if out is None else as_text(out))
