"""What a span says about the agent's step, read once on the decoding thread, not on the writer.

Reading a span through the conventions (``semconv``, ``messages``) is pure
Python over its attributes: its kind, model, usage, parameters, tool call
and the messages in its attributes and span events. None of it needs the
database, so the pipeline does it beside decoding (``decode.traces_of``),
and the one writer thread, which every other write waits for, only writes.
Only a model call's messages can still change on the writer: log records
that arrived before the span add to them (``otlp._llm`` reads them again
then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.ingest import messages, semconv
from app.ingest.decode import SpanRecord

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class SpanFacts:
    kind: str  # semconv.LLM | TOOL | AGENT | OTHER
    session: str | None
    # Run parameters this span teaches (temperature, agent name, tool definitions).
    learned: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    provider: str = ""
    usage: tuple[int | None, int | None] = (None, None)
    finish_reason: str | None = None
    error: str | None = None  # semconv.error_of, for a span with status ERROR
    # A model call's messages from its attributes and span events (no log records).
    inputs: Messages = field(default_factory=list)
    outputs: Messages = field(default_factory=list)
    tool: dict[str, Any] | None = None
    io: tuple[str | None, str | None] = (None, None)  # a root span's input and output


def facts_of(span: SpanRecord) -> SpanFacts:
    """Everything the writer needs to know of ``span``, short of the database."""
    kind = semconv.kind_of(span)
    learned = semconv.params_of(span) if kind == semconv.LLM else {}
    agent = semconv.agent_name_of(span)
    if agent:
        learned["agent"] = agent
    tools = semconv.tool_definitions_of(span)
    if tools:
        learned["tool_definitions"] = tools
    llm: dict[str, Any] = {}
    if kind == semconv.LLM:
        inputs, outputs = messages.messages_of(span, [])
        llm = {
            "model": semconv.model_of(span),
            "provider": semconv.provider_of(span),
            "usage": semconv.usage_of(span),
            "finish_reason": semconv.finish_reason_of(span),
            "inputs": inputs,
            "outputs": outputs,
        }
    return SpanFacts(
        kind=kind,
        session=semconv.session_of(span),
        learned=learned,
        error=semconv.error_of(span) if span.error else None,
        tool=semconv.tool_of(span) if kind == semconv.TOOL else None,
        io=semconv.io_of(span) if span.is_root else (None, None),
        **llm,
    )
