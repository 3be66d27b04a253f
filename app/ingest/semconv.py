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

Each reader tries the conventions in turn and returns plain values; the
messages of a model call are read in ``app.ingest.messages``.
"""

from __future__ import annotations

import re
from typing import Any

from app.ingest import normalize
from app.ingest.decode import SpanRecord
from app.ingest.jsonbody import JSONBodyError, load_json
from app.store.rows import encode_json

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


def as_dict(value: Any) -> dict[str, Any]:
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
    return encode_json(value)


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
    function = as_dict(value.get("function")) or value
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
