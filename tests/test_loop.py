"""Unit tests of the agent loop (agents/loop.py) with a scripted provider.

No app, no network: a provider defined here yields scripted text chunks and a
final Completion, and a list sink collects the events the loop emits.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents.events import (
    Event,
    LLMCallFinished,
    LLMCallStarted,
    MessageAdded,
    RunFailed,
    RunFinished,
    RunStarted,
    TokenDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from agents.events import ModelLoaded as ModelLoadedEvent
from agents.events import ModelLoading as ModelLoadingEvent
from agents.loop import MAX_TOOL_RESULT_CHARS, RunRequest, run_agent
from agents.providers.base import (
    Completion,
    GenerationParams,
    ModelLoaded,
    ModelLoading,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
)
from agents.tools import Tool, ToolOutput

MODEL = "scripted-model"


class Turn:
    """One scripted model call: text chunks, then tool calls (or an exception)."""

    def __init__(
        self,
        chunks: list[Any] | None = None,  # text, and markers such as ToolCallChunk
        calls: list[tuple[str, dict[str, Any]]] | None = None,
        raise_exc: Exception | None = None,
        usage: tuple[int, int] = (10, 5),
        no_completion: bool = False,
    ) -> None:
        self.chunks = chunks or []
        self.calls = calls or []
        self.raise_exc = raise_exc
        self.usage = usage
        self.no_completion = no_completion


class ScriptedProvider:
    name = "scripted"

    def __init__(self, *turns: Turn) -> None:
        self.turns = list(turns)
        self.calls: list[dict[str, Any]] = []  # what each stream() call received

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[ToolSpec], params: GenerationParams
    ) -> AsyncIterator[str | Completion]:
        # The loop keeps appending to ``messages``: snapshot it now.
        self.calls.append(
            {"messages": [dict(m) for m in messages], "tools": list(tools), "params": params}
        )
        turn = self.turns.pop(0) if self.turns else Turn(chunks=["done"])
        for chunk in turn.chunks:
            yield chunk
        if turn.raise_exc is not None:
            raise turn.raise_exc
        if turn.no_completion:
            return
        n = len(self.calls)
        yield Completion(
            text="".join(c for c in turn.chunks if isinstance(c, str)),
            model=params.model,
            input_tokens=turn.usage[0],
            output_tokens=turn.usage[1],
            finish_reason="tool_calls" if turn.calls else "stop",
            tool_calls=tuple(
                ToolCallRequest(id=f"c{n}_{i}", name=name, arguments=args)
                for i, (name, args) in enumerate(turn.calls)
            ),
        )


class ListSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


def make_tool(name: str, func: Any, timeout_s: float = 5.0) -> Tool:
    spec = ToolSpec(
        name=name,
        description=f"test tool {name}",
        parameters={"type": "object", "properties": {"x": {"type": "string"}}},
    )
    return Tool(spec=spec, func=func, settings={"k": "v"}, timeout_s=timeout_s)


def run(
    provider: ScriptedProvider,
    tools: list[Tool] | None = None,
    **request: Any,
) -> tuple[str | None, ListSink]:
    sink = ListSink()
    req = RunRequest(prompt=request.pop("prompt", "hello"), model=MODEL, **request)
    result = asyncio.run(run_agent(req, provider, tools or [], sink))
    return result, sink


# --- plain answers -------------------------------------------------------------------------


def test_plain_answer_event_order():
    provider = ScriptedProvider(Turn(chunks=["Hel", "lo ", "world"], usage=(12, 3)))
    result, sink = run(provider)

    assert result == "Hello world"
    assert sink.types() == [
        "run_started",
        "message",
        "memory_snapshot",  # step 0: the prompt
        "llm_call_started",
        "token",
        "token",
        "token",
        "llm_call_finished",
        "message",
        "memory_snapshot",  # step 1: the model's reply
        "run_finished",
    ]
    started = sink.events[0]
    assert isinstance(started, RunStarted)
    assert started.model == MODEL and started.provider == "scripted"
    assert started.params["tools"] is None and "prompt" not in started.params

    user, assistant = sink.of(MessageAdded)
    assert (user.role, user.content) == ("user", "hello")
    assert (assistant.role, assistant.content) == ("assistant", "Hello world")
    assert assistant.tool_calls == ()

    tokens = sink.of(TokenDelta)
    assert [t.text for t in tokens] == ["Hel", "lo ", "world"]
    assert all(t.round == 0 for t in tokens)
    assert [t.run_output_tokens for t in tokens] == [1, 2, 3]  # live, one per piece
    [call] = sink.of(LLMCallStarted)
    assert (call.model, call.round) == (MODEL, 0)

    [llm] = sink.of(LLMCallFinished)
    assert (llm.input_tokens, llm.output_tokens) == (12, 3)
    assert llm.provider == "scripted" and llm.model == MODEL and llm.round == 0
    assert llm.finish_reason == "stop" and llm.latency_ms >= 0

    [finished] = sink.of(RunFinished)
    assert finished.response == "Hello world"
    # Timestamps never go backwards.
    ats = [e.at for e in sink.events]
    assert ats == sorted(ats)


def test_generation_params_passed_to_provider():
    provider = ScriptedProvider(Turn(chunks=["ok"]))
    run(provider, temperature=0.2, max_tokens=33)
    [call] = provider.calls
    assert call["params"] == GenerationParams(model=MODEL, temperature=0.2, max_tokens=33)
    assert call["messages"] == [{"role": "user", "content": "hello"}]


def test_empty_chunks_are_not_emitted_as_tokens():
    provider = ScriptedProvider(Turn(chunks=["", "a", "", "b"]))
    result, sink = run(provider)
    assert result == "ab"
    assert [t.text for t in sink.of(TokenDelta)] == ["a", "b"]


def test_system_prompt_is_emitted_and_sent_first():
    provider = ScriptedProvider(Turn(chunks=["hi"]))
    _, sink = run(provider, system_prompt="You are terse.")
    assert sink.types()[:3] == ["run_started", "message", "message"]
    system, user = sink.of(MessageAdded)[:2]
    assert (system.role, system.content) == ("system", "You are terse.")
    assert user.role == "user"
    assert provider.calls[0]["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello"},
    ]


def test_no_system_message_without_system_prompt():
    provider = ScriptedProvider(Turn(chunks=["hi"]))
    _, sink = run(provider, system_prompt="")
    assert [m.role for m in sink.of(MessageAdded)] == ["user", "assistant"]
    assert provider.calls[0]["messages"][0]["role"] == "user"


# --- tools ---------------------------------------------------------------------------------


def test_tool_round_trip_feeds_result_back():
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def echo(args: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
        seen.append((args, settings))
        return ToolOutput(f"echo:{args['x']}", ({"vendor": "test", "units": 1},))

    provider = ScriptedProvider(
        Turn(chunks=["Let me check."], calls=[("echo", {"x": "42"})]),
        Turn(chunks=["It is 42."]),
    )
    result, sink = run(provider, [make_tool("echo", echo)])

    assert result == "It is 42."
    assert seen == [({"x": "42"}, {"k": "v"})]
    assert sink.types() == [
        "run_started",
        "message",  # user
        "memory_snapshot",
        "llm_call_started",
        "token",
        "llm_call_finished",
        "message",  # assistant asking for the tool
        "memory_snapshot",
        "tool_call_started",
        "tool_call_finished",
        "message",  # tool result
        "memory_snapshot",
        "llm_call_started",
        "token",
        "llm_call_finished",
        "message",  # final assistant answer
        "memory_snapshot",
        "run_finished",
    ]
    [started] = sink.of(ToolCallStarted)
    [finished] = sink.of(ToolCallFinished)
    assert started.call_id == finished.call_id == "c1_0"
    assert finished.ok and finished.result == "echo:42" and finished.error is None
    assert finished.cost_lines == ({"vendor": "test", "units": 1},)
    assert [t.round for t in sink.of(TokenDelta)] == [0, 1]
    assert [c.round for c in sink.of(LLMCallFinished)] == [0, 1]

    assistant = sink.of(MessageAdded)[1]
    assert assistant.role == "assistant"
    assert assistant.tool_calls == (
        {
            "id": "c1_0",
            "type": "function",
            "function": {"name": "echo", "arguments": '{"x": "42"}'},
        },
    )
    tool_msg = sink.of(MessageAdded)[2]
    assert (tool_msg.role, tool_msg.content, tool_msg.tool_call_id, tool_msg.name) == (
        "tool",
        "echo:42",
        "c1_0",
        "echo",
    )
    # The second model call saw the assistant's request and the tool's answer.
    second = provider.calls[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool"]
    assert second[2] == {
        "role": "tool",
        "content": "echo:42",
        "tool_call_id": "c1_0",
        "name": "echo",
    }


def test_tool_that_raises_is_a_failed_call_and_loop_continues():
    def boom(args: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
        raise ValueError("bad input")

    provider = ScriptedProvider(
        Turn(calls=[("boom", {"x": "1"})]),
        Turn(chunks=["Sorry, the tool failed."]),
    )
    result, sink = run(provider, [make_tool("boom", boom)])

    assert result == "Sorry, the tool failed."
    [finished] = sink.of(ToolCallFinished)
    assert not finished.ok
    assert finished.result is None
    assert finished.error == "ValueError: bad input"
    tool_msg = [m for m in sink.of(MessageAdded) if m.role == "tool"][0]
    assert tool_msg.content == "ERROR: ValueError: bad input"
    assert provider.calls[1]["messages"][-1]["content"] == "ERROR: ValueError: bad input"
    assert sink.types()[-1] == "run_finished"


def test_unknown_tool_is_a_failed_call():
    provider = ScriptedProvider(
        Turn(calls=[("no_such_tool", {})]),
        Turn(chunks=["ok"]),
    )
    result, sink = run(provider, [make_tool("echo", lambda a, s: ToolOutput("x"))])

    assert result == "ok"
    [started] = sink.of(ToolCallStarted)
    [finished] = sink.of(ToolCallFinished)
    assert started.name == finished.name == "no_such_tool"
    assert finished.error == "unknown tool 'no_such_tool'"
    assert finished.result is None
    assert provider.calls[1]["messages"][-1]["content"] == "ERROR: unknown tool 'no_such_tool'"


def test_malformed_arguments_marker_is_a_failed_call_without_running_the_tool():
    ran: list[Any] = []
    provider = ScriptedProvider(
        Turn(calls=[("echo", {"__error__": "model sent malformed JSON arguments", "raw": "{"})]),
        Turn(chunks=["ok"]),
    )
    result, sink = run(provider, [make_tool("echo", lambda a, s: ran.append(a) or ToolOutput("x"))])
    assert result == "ok"
    assert ran == []
    [finished] = sink.of(ToolCallFinished)
    assert finished.error == "model sent malformed JSON arguments"


def test_tool_timeout_is_a_failed_call():
    release = threading.Event()

    def slow(args: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
        release.wait(10)
        return ToolOutput("too late")

    provider = ScriptedProvider(
        Turn(calls=[("slow", {})]),
        Turn(chunks=["gave up"]),
    )
    sink = ListSink()

    async def main() -> str | None:
        try:
            return await run_agent(
                RunRequest(prompt="go", model=MODEL), provider, [make_tool("slow", slow, 0.1)], sink
            )
        finally:
            release.set()  # let the abandoned worker thread end

    t0 = time.perf_counter()
    result = asyncio.run(main())
    elapsed = time.perf_counter() - t0

    assert result == "gave up"
    assert elapsed < 5
    [finished] = sink.of(ToolCallFinished)
    assert finished.error is not None and "timed out" in finished.error
    assert finished.error == "timed out after 0.1s"
    assert 50 <= finished.latency_ms < 5000
    assert sink.types()[-1] == "run_finished"


def test_tool_result_is_truncated():
    provider = ScriptedProvider(Turn(calls=[("big", {})]), Turn(chunks=["ok"]))
    _, sink = run(provider, [make_tool("big", lambda a, s: ToolOutput("x" * 10_000))])
    [finished] = sink.of(ToolCallFinished)
    assert finished.result == "x" * MAX_TOOL_RESULT_CHARS


def test_several_tool_calls_in_one_turn_run_in_order():
    order: list[str] = []

    def rec(args: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
        order.append(args["x"])
        return ToolOutput(args["x"])

    provider = ScriptedProvider(
        Turn(calls=[("rec", {"x": "a"}), ("rec", {"x": "b"})]),
        Turn(chunks=["done"]),
    )
    result, sink = run(provider, [make_tool("rec", rec)])
    assert result == "done"
    assert order == ["a", "b"]
    assert [f.call_id for f in sink.of(ToolCallFinished)] == ["c1_0", "c1_1"]
    tool_msgs = [m for m in provider.calls[1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_msgs] == [("c1_0", "a"), ("c1_1", "b")]


# --- rounds --------------------------------------------------------------------------------


def test_last_round_withholds_tool_specs():
    tool = make_tool("echo", lambda a, s: ToolOutput("e"))
    provider = ScriptedProvider(
        Turn(calls=[("echo", {})]),
        Turn(calls=[("echo", {})]),
        Turn(chunks=["final"]),
    )
    result, sink = run(provider, [tool], max_rounds=3)
    assert result == "final"
    assert [len(c["tools"]) for c in provider.calls] == [1, 1, 0]
    assert provider.calls[0]["tools"] == [tool.spec]


def test_single_round_passes_no_tools():
    provider = ScriptedProvider(Turn(chunks=["plain"]))
    result, _ = run(provider, [make_tool("echo", lambda a, s: ToolOutput("e"))], max_rounds=1)
    assert result == "plain"
    assert provider.calls[0]["tools"] == []


def test_no_final_answer_within_max_rounds_fails_the_run():
    # A model that asks for tools even when none are offered.
    tool = make_tool("echo", lambda a, s: ToolOutput("e"))
    provider = ScriptedProvider(*[Turn(calls=[("echo", {})]) for _ in range(2)])
    result, sink = run(provider, [tool], max_rounds=2)
    assert result is None
    assert len(provider.calls) == 2
    assert sink.types()[-1] == "run_failed"
    [failed] = sink.of(RunFailed)
    assert "no final answer within 2 rounds" in failed.error
    assert not sink.of(RunFinished)


def test_max_rounds_zero_is_one_last_round_without_tools():
    provider = ScriptedProvider(Turn(chunks=["plain"]))
    result, _ = run(provider, [make_tool("echo", lambda a, s: ToolOutput("e"))], max_rounds=0)
    assert result == "plain"
    assert provider.calls[0]["tools"] == []


# --- provider failures ---------------------------------------------------------------------


def test_provider_exception_fails_the_run():
    provider = ScriptedProvider(Turn(chunks=["partial "], raise_exc=ConnectionError("boom")))
    result, sink = run(provider)
    assert result is None
    assert sink.types() == [
        "run_started",
        "message",
        "memory_snapshot",
        "llm_call_started",
        "token",
        "run_failed",
    ]
    [failed] = sink.of(RunFailed)
    assert failed.error == "ConnectionError: boom"
    assert not sink.of(RunFinished)


def test_provider_exception_after_a_tool_round_fails_the_run():
    provider = ScriptedProvider(
        Turn(calls=[("echo", {})]),
        Turn(raise_exc=RuntimeError("Mistral API error 500: down")),
    )
    result, sink = run(provider, [make_tool("echo", lambda a, s: ToolOutput("e"))])
    assert result is None
    assert sink.types()[-1] == "run_failed"
    assert sink.of(RunFailed)[0].error == "RuntimeError: Mistral API error 500: down"
    assert len(sink.of(ToolCallFinished)) == 1


def test_provider_without_completion_fails_the_run():
    provider = ScriptedProvider(Turn(chunks=["x"], no_completion=True))
    result, sink = run(provider)
    assert result is None
    assert "provider ended without a completion" in sink.of(RunFailed)[0].error


def test_cancellation_propagates_and_is_not_recorded_as_failure():
    class Hanging:
        name = "hanging"

        async def stream(self, messages, tools, params):  # type: ignore[no-untyped-def]
            yield "x"
            await asyncio.sleep(30)
            yield Completion(text="x", model=params.model)  # pragma: no cover

    sink = ListSink()

    async def main() -> None:
        task = asyncio.create_task(
            run_agent(RunRequest(prompt="p", model=MODEL), Hanging(), [], sink)
        )
        while "token" not in sink.types():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 5))
    assert "run_failed" not in sink.types()


def test_event_dicts_are_json_ready():
    provider = ScriptedProvider(Turn(calls=[("echo", {"x": "1"})]), Turn(chunks=["ok"]))
    _, sink = run(provider, [make_tool("echo", lambda a, s: ToolOutput("e"))])
    for event in sink.events:
        data = event.to_dict()
        assert data["type"] == event.type
        json.dumps(data)


def test_tool_raising_timeout_error_is_not_reported_as_loop_timeout():
    def fails_fast(args: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
        raise TimeoutError("upstream connect timeout")

    provider = ScriptedProvider(Turn(calls=[("net", {})]), Turn(chunks=["ok"]))
    _, sink = run(provider, [make_tool("net", fails_fast, timeout_s=30)])
    [finished] = sink.of(ToolCallFinished)
    assert finished.error == "TimeoutError: upstream connect timeout"


# --- waits: model loading, tool calls written piece by piece -----------------------------------


class WarmingProvider(ScriptedProvider):
    """A provider that loads its model on first use (as the local one does)."""

    def __init__(self, *turns: Turn) -> None:
        super().__init__(*turns)
        self.loaded = False

    async def warm_up(self, model: str) -> AsyncIterator[ModelLoading | ModelLoaded]:
        if self.loaded:
            return
        yield ModelLoading(model)
        self.loaded = True
        yield ModelLoaded(model, 1234.0)


def test_a_model_load_is_announced_once_after_the_call_starts():
    provider = WarmingProvider(
        Turn(chunks=["Let me check."], calls=[("echo", {"x": "1"})]), Turn(chunks=["ok"])
    )
    echo = make_tool("echo", lambda args, settings: ToolOutput("1"))
    _, sink = run(provider, [echo])
    types = sink.types()
    assert types[3:6] == ["llm_call_started", "model_loading", "model_loaded"]
    assert types.count("model_loading") == 1 and types.count("llm_call_started") == 2
    [loading] = sink.of(ModelLoadingEvent)
    [loaded] = sink.of(ModelLoadedEvent)
    assert loading.model == loaded.model == MODEL and loaded.latency_ms == 1234.0


def test_tool_call_pieces_become_deltas_and_count_as_live_tokens():
    pieces = ['{"x"', ': "4', '2"}']
    provider = ScriptedProvider(
        Turn(
            chunks=[
                "Hm. ",
                ToolCallChunk(0, "echo", ""),
                *(ToolCallChunk(0, "echo", p) for p in pieces),
            ],
            calls=[("echo", {"x": "42"})],
            usage=(10, 9),
        ),
        Turn(chunks=["It ", "is ", "42."]),
    )
    _, sink = run(provider, [make_tool("echo", lambda args, settings: ToolOutput("42"))])
    deltas = sink.of(ToolCallDelta)
    # The name arrives first with no text; the pieces join to the arguments the call runs with.
    assert [(d.round, d.index, d.name) for d in deltas] == [(0, 0, "echo")] * 4
    assert "".join(d.text for d in deltas) == '{"x": "42"}'
    [started] = sink.of(ToolCallStarted)
    assert started.arguments == {"x": "42"}
    types = sink.types()
    assert types.index("tool_call_delta") < types.index("llm_call_finished")
    # One token per piece with text; round 1 counts on from the 9 that round 0 reported.
    assert [d.run_output_tokens for d in deltas] == [1, 2, 3, 4]
    assert [t.run_output_tokens for t in sink.of(TokenDelta)] == [1, 10, 11, 12]
