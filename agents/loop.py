"""The tool-calling agent loop.

Ask the model; if it asks for tools, run them and feed the results back;
repeat until it answers in plain text or the round limit is reached. On the
last round tools are withheld so the model has to answer. Every step is
emitted as an event to the sink, followed by a snapshot of the loop's memory
(messages and scratch state); a failing tool becomes a failed tool call and
the run goes on, a failing model call fails the run.

Waits are events too, so a viewer can say what the run is doing: a model
call starts (``llm_call_started``), its model may load first
(``model_loading``, ``model_loaded``), text and tool-call arguments stream
piece by piece (``token``, ``tool_call_delta``, each with a live estimate of
the run's output tokens), and a tool runs between ``tool_call_started`` and
``tool_call_finished``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from agents import events
from agents.events import (
    EventSink,
    LLMCallFinished,
    LLMCallStarted,
    MemorySnapshot,
    MessageAdded,
    RunFailed,
    RunFinished,
    RunStarted,
    TokenDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from agents.providers.base import (
    Completion,
    GenerationParams,
    ModelLoaded,
    ModelLoading,
    Provider,
    ProviderError,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
    WarmsUp,
)
from agents.tools import Tool, ToolTimedOut

MAX_TOOL_RESULT_CHARS = 4000


@dataclass(frozen=True)
class RunRequest:
    """What to run: the prompt and every knob a replay may override."""

    prompt: str
    model: str
    temperature: float = 0.7
    max_tokens: int = 512
    system_prompt: str | None = None
    tools: tuple[str, ...] | None = None  # None: every configured tool
    max_rounds: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("prompt")
        data["tools"] = list(self.tools) if self.tools is not None else None
        return data


def _add_tokens(total: int | None, more: int | None) -> int | None:
    """A running token count; once a call reported no usage the total is unknown (None)."""
    return None if total is None or more is None else total + more


def _tool_message(call: ToolCallRequest, content: str) -> dict[str, Any]:
    return {"role": "tool", "content": content, "tool_call_id": call.id, "name": call.name}


def _assistant_message(completion: Completion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in completion.tool_calls
        ]
    return message


async def _call_tool(tool: Tool | None, call: ToolCallRequest, sink: EventSink) -> tuple[str, bool]:
    """Run one tool call, emit its start and finish; return what the model is told, and ok."""
    await sink.emit(ToolCallStarted(call_id=call.id, name=call.name, arguments=call.arguments))
    started = time.perf_counter()
    result: str | None = None
    error: str | None = None
    cost_lines: tuple[dict[str, Any], ...] = ()
    if tool is None:
        error = f"unknown tool {call.name!r}"
    elif "__error__" in call.arguments:
        error = str(call.arguments["__error__"])
    else:
        # On the tool's thread pool (or the loop, for an async tool) within its
        # time limit; a cancelled run cancels the call (see agents.tools.ToolPool).
        try:
            output = await tool.invoke(call.arguments)
            result = output.text[:MAX_TOOL_RESULT_CHARS]
            cost_lines = output.cost_lines
        except ToolTimedOut as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any tool failure is data, not a crash
            error = f"{type(exc).__name__}: {exc}"[:1000]
    latency_ms = (time.perf_counter() - started) * 1000
    await sink.emit(
        ToolCallFinished(
            call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            result=result,
            error=error,
            latency_ms=latency_ms,
            cost_lines=cost_lines,
        )
    )
    if error is not None:
        return f"ERROR: {error}", False
    assert result is not None  # without an error the tool returned its text
    return result, True


async def _emit_marker(item: ModelLoading | ModelLoaded, sink: EventSink) -> None:
    if isinstance(item, ModelLoading):
        await sink.emit(events.ModelLoading(model=item.model))
    else:
        await sink.emit(events.ModelLoaded(model=item.model, latency_ms=item.latency_ms))


async def _model_call(
    provider: Provider,
    messages: list[dict[str, Any]],
    specs: list[ToolSpec],
    params: GenerationParams,
    round_: int,
    reported_out: int,
    sink: EventSink,
) -> Completion:
    """One model call, streamed to the sink as it happens; its final completion.

    ``reported_out`` is the output tokens reported by the run's earlier calls:
    each streamed piece adds one to the live estimate on top of it.
    """
    if isinstance(provider, WarmsUp):
        async for marker in provider.warm_up(params.model):
            await _emit_marker(marker, sink)
    streamed = 0
    completion: Completion | None = None
    async for item in provider.stream(messages, specs, params):
        if isinstance(item, Completion):
            completion = item
        elif isinstance(item, (ModelLoading, ModelLoaded)):
            await _emit_marker(item, sink)
        elif isinstance(item, ToolCallChunk):
            if not item.text and not item.name:
                continue
            streamed += 1 if item.text else 0
            await sink.emit(
                ToolCallDelta(
                    round=round_,
                    index=item.index,
                    name=item.name,
                    text=item.text,
                    run_output_tokens=reported_out + streamed,
                )
            )
        elif item:
            streamed += 1
            await sink.emit(
                TokenDelta(text=item, round=round_, run_output_tokens=reported_out + streamed)
            )
    if completion is None:
        raise RuntimeError("provider ended without a completion")
    return completion


class _Memory:
    """Emits snapshots of the loop's memory: the message list plus its scratch state."""

    def __init__(self, messages: list[dict[str, Any]], scratch: dict[str, Any], sink: EventSink):
        self.messages = messages
        self.scratch = scratch
        self.sink = sink
        self.step = 0

    async def snapshot(self, label: str) -> None:
        # Deep copies: the loop keeps appending, a snapshot must stay as it was.
        await self.sink.emit(
            MemorySnapshot(
                step=self.step,
                label=label,
                messages=tuple(copy.deepcopy(self.messages)),
                scratch=copy.deepcopy(self.scratch),
            )
        )
        self.step += 1


async def run_agent(
    request: RunRequest, provider: Provider, tools: list[Tool], sink: EventSink
) -> str | None:
    """Run the agent to completion; return the final answer, or None if it failed."""
    by_name = {t.name: t for t in tools}
    await sink.emit(
        RunStarted(model=request.model, provider=provider.name, params=request.params())
    )
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
        await sink.emit(MessageAdded(role="system", content=request.system_prompt))
    messages.append({"role": "user", "content": request.prompt})
    await sink.emit(MessageAdded(role="user", content=request.prompt))

    params = GenerationParams(
        model=request.model, temperature=request.temperature, max_tokens=request.max_tokens
    )
    rounds = max(1, request.max_rounds)
    # What the loop tracks besides the messages; snapshotted with them.
    scratch: dict[str, Any] = {
        "round": 0,
        "max_rounds": rounds,
        "tools_offered": [],
        "pending_tool_calls": [],
        "tool_calls": 0,
        "tool_errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "finish_reason": None,
    }
    memory = _Memory(messages, scratch, sink)
    # Output tokens the run's finished calls reported (unknown counts 0, as on the run row).
    reported_out = 0
    try:
        await memory.snapshot("prompt")
        for round_ in range(rounds):
            last_round = round_ == rounds - 1
            specs = [] if last_round else [t.spec for t in tools]
            await sink.emit(LLMCallStarted(model=request.model, round=round_))
            # The call's latency counts a model load too, as it always did.
            started = time.perf_counter()
            completion = await _model_call(
                provider, messages, specs, params, round_, reported_out, sink
            )
            reported_out += completion.output_tokens or 0
            await sink.emit(
                LLMCallFinished(
                    model=completion.model or request.model,
                    provider=provider.name,
                    input_tokens=completion.input_tokens,
                    output_tokens=completion.output_tokens,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    round=round_,
                    finish_reason=completion.finish_reason,
                )
            )
            assistant = _assistant_message(completion)
            messages.append(assistant)
            await sink.emit(
                MessageAdded(
                    role="assistant",
                    content=completion.text,
                    tool_calls=tuple(assistant.get("tool_calls", ())),
                )
            )
            scratch.update(
                round=round_ + 1,
                tools_offered=[s.name for s in specs],
                pending_tool_calls=[c.name for c in completion.tool_calls],
                input_tokens=_add_tokens(scratch["input_tokens"], completion.input_tokens),
                output_tokens=_add_tokens(scratch["output_tokens"], completion.output_tokens),
                finish_reason=completion.finish_reason,
            )
            await memory.snapshot(f"round {round_ + 1}: model reply")
            if not completion.tool_calls:
                await sink.emit(RunFinished(response=completion.text))
                return completion.text
            for call in completion.tool_calls:
                content, ok = await _call_tool(by_name.get(call.name), call, sink)
                messages.append(_tool_message(call, content))
                await sink.emit(
                    MessageAdded(role="tool", content=content, tool_call_id=call.id, name=call.name)
                )
                scratch["tool_calls"] += 1
                scratch["tool_errors"] += 0 if ok else 1
            scratch["pending_tool_calls"] = []
            await memory.snapshot(f"round {round_ + 1}: tool results")
        raise RuntimeError(f"no final answer within {rounds} rounds")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the run fails cleanly, the process goes on
        # A provider's error is already written for people; anything else is a bug to name.
        error = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
        await sink.emit(RunFailed(error=error[:2000]))
        return None
