"""The Mistral path: the real ``mistralai`` SDK against the local fake server.

Most tests drive the real app over HTTP (POST /api/runs, then the run's detail
and its SSE event stream); the last ones use MistralProvider directly. Only
127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from agents.providers.base import (
    Completion,
    GenerationParams,
    ProviderError,
    ToolCallChunk,
    ToolSpec,
)
from agents.providers.mistral import MistralProvider, RetryPolicy
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import FakeMistral, Reply

# --- helpers -------------------------------------------------------------------------------


def start_run(client: Any, prompt: str, **body: Any) -> str:
    r = client.post("/api/runs", json={"prompt": prompt, "model": MISTRAL_MODEL, **body})
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def sse_events(client: Any, run_id: str) -> list[dict[str, Any]]:
    """Read GET /api/runs/{id}/events to its end; each event as {id, event, data}."""
    r = client.get(f"/api/runs/{run_id}/events")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in r.text.splitlines():
        line = line.rstrip("\r")
        if not line:
            if "data" in current:
                current["data"] = json.loads(current["data"])
                events.append(current)
            current = {}
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "data":
            current["data"] = current["data"] + "\n" + value if "data" in current else value
        else:
            current[key] = value
    if "data" in current:
        current["data"] = json.loads(current["data"])
        events.append(current)
    return events


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"]["payload"] for e in events if e["event"] == kind]


# --- through the app -----------------------------------------------------------------------


def test_streamed_reply_becomes_token_events(client, fake_mistral):
    text = "The quick brown fox jumps over the lazy dog."
    fake_mistral.add(Reply(text=text, chunk_size=5, delay_s=0.03))
    run_id = start_run(client, "tell me about foxes", tools=[])
    detail = wait_for_run(client, run_id)
    assert detail["run"]["status"] == "succeeded", detail["run"]
    assert detail["run"]["response"] == text

    events = sse_events(client, run_id)
    # ids are the sequence numbers, event names are the types, the stream ends at the end.
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    assert all(e["event"] == e["data"]["type"] == e["data"]["payload"]["type"] for e in events)
    assert all(e["data"]["seq"] == int(e["id"]) for e in events)
    assert events[0]["event"] == "run_started"
    assert events[-1]["event"] == "run_finished"

    tokens = of_type(events, "token")
    assert len(tokens) >= 5  # streamed in several pieces, not one blob
    assert "".join(t["text"] for t in tokens) == text
    assert all(t["round"] == 0 for t in tokens)
    # Tokens were recorded as they arrived, not all at the end.
    assert tokens[-1]["at"] - tokens[0]["at"] >= 0.1

    [finished] = of_type(events, "run_finished")
    assert finished["response"] == text
    assert [e["event"] for e in events if e["event"] != "token"] == [
        "run_started",
        "message",
        "memory_snapshot",
        "llm_call_started",
        "llm_call_finished",
        "message",
        "memory_snapshot",
        "run_finished",
    ]
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["messages"][1]["content"] == text

    # What the SDK sent: a streaming request without tools.
    [body] = fake_mistral.requests
    assert body["stream"] is True
    assert body["model"] == MISTRAL_MODEL
    assert body["messages"] == [{"role": "user", "content": "tell me about foxes"}]
    assert "tools" not in body or not body["tools"]


def test_event_stream_follows_a_run_live_and_resumes(client, fake_mistral):
    text = "".join(f"w{i} " for i in range(30))
    fake_mistral.add(Reply(text=text, chunk_size=3, delay_s=0.02))
    run_id = start_run(client, "stream slowly", tools=[])
    # Opened while the model is still streaming: stored events first, then live ones.
    live = sse_events(client, run_id)
    assert [int(e["id"]) for e in live] == list(range(1, len(live) + 1))  # each exactly once
    assert live[-1]["event"] == "run_finished"
    assert "".join(t["text"] for t in of_type(live, "token")) == text
    assert live[-1]["data"]["run"]["status"] == "succeeded"

    # Resuming after seq k (Last-Event-ID or ?after=) replays only what follows.
    k = len(live) // 2
    r = client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": str(k)})
    resumed = [int(line[3:]) for line in r.text.splitlines() if line.startswith("id:")]
    assert resumed == list(range(k + 1, len(live) + 1))
    r = client.get(f"/api/runs/{run_id}/events", params={"after": k})
    assert [int(line[3:]) for line in r.text.splitlines() if line.startswith("id:")] == resumed


def test_tool_call_round_trip(client, fake_mistral):
    fake_mistral.add(
        Reply(
            text="Let me say it.",
            tool_calls=[
                {"id": "call0abcd", "name": "elevenlabs_speak", "arguments": {"text": "hi"}}
            ],
        ),
        Reply(text="I could not speak.", usage=(40, 4)),
    )
    run_id = start_run(client, "say hi aloud", tools=["elevenlabs_speak"])
    detail = wait_for_run(client, run_id)
    run = detail["run"]
    assert run["status"] == "succeeded", run
    assert run["response"] == "I could not speak."
    assert run["tool_calls"] == 1 and run["tool_errors"] == 1

    # The fake saw two calls; the first offered the tool, the second carried its result.
    assert len(fake_mistral.requests) == 2
    first, second = fake_mistral.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["elevenlabs_speak"]
    assert first["tool_choice"] == "auto"
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assistant, tool_msg = second["messages"][1], second["messages"][2]
    assert assistant["tool_calls"][0]["id"] == "call0abcd"
    assert assistant["tool_calls"][0]["function"]["name"] == "elevenlabs_speak"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"text": "hi"}
    assert tool_msg["tool_call_id"] == "call0abcd"
    assert "ELEVENLABS_API_KEY" in tool_msg["content"]
    assert tool_msg["content"].startswith("ERROR: ")

    # Recorded: messages, the failed tool call, spans of each kind.
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert detail["messages"][1]["tool_calls"][0]["id"] == "call0abcd"
    assert detail["messages"][2]["tool_call_id"] == "call0abcd"
    assert detail["messages"][2]["name"] == "elevenlabs_speak"
    [call] = detail["tool_calls"]
    assert call["call_id"] == "call0abcd"
    assert call["name"] == "elevenlabs_speak"
    assert call["arguments"] == {"text": "hi"}
    assert call["status"] == "error" and "ELEVENLABS_API_KEY" in call["error"]
    assert call["result"] is None
    kinds = sorted(s["kind"] for s in detail["spans"])
    assert kinds == ["agent", "llm", "llm", "tool"]
    by_kind = {s["kind"]: s for s in detail["spans"]}
    agent, tool = by_kind["agent"], by_kind["tool"]
    assert agent["status"] == "ok" and agent["attributes"]["gen_ai.provider.name"] == "mistral_ai"
    assert tool["status"] == "error" and "ELEVENLABS_API_KEY" in tool["status_message"]
    assert tool["attributes"]["gen_ai.tool.call.id"] == "call0abcd"
    assert all(s["parent_span_id"] == agent["span_id"] for s in detail["spans"] if s != agent)

    events = sse_events(client, run_id)
    # Mistral sends a tool call whole: its arguments come as one piece, before the call runs.
    assert [e["event"] for e in events if e["event"].startswith("tool_call")] == [
        "tool_call_delta",
        "tool_call_started",
        "tool_call_finished",
    ]
    [delta] = of_type(events, "tool_call_delta")
    assert (delta["name"], delta["index"], delta["round"]) == ("elevenlabs_speak", 0, 0)
    assert json.loads(delta["text"]) == {"text": "hi"}
    assert [t["round"] for t in of_type(events, "llm_call_finished")] == [0, 1]
    assert [t["finish_reason"] for t in of_type(events, "llm_call_finished")] == [
        "tool_calls",
        "stop",
    ]


def test_usage_gives_tokens_and_cost(client, fake_mistral):
    fake_mistral.add(Reply(text="priced answer", usage=(1000, 500)))
    run_id = start_run(client, "how much?", tools=[])
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "succeeded"
    assert run["input_tokens"] == 1000
    assert run["output_tokens"] == 500
    assert run["cost_status"] == "priced"
    assert run["cost_usd"] == pytest.approx((1000 * 0.1 + 500 * 0.3) / 1e6)

    [llm] = of_type(sse_events(client, run_id), "llm_call_finished")
    assert (llm["input_tokens"], llm["output_tokens"]) == (1000, 500)
    assert llm["cost_status"] == "priced"
    assert llm["cost_usd"] == pytest.approx(0.00025)
    assert llm["provider"] == "mistral" and llm["model"] == MISTRAL_MODEL


def test_usage_sums_over_rounds(client, fake_mistral):
    fake_mistral.add(
        Reply(
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "x"}}], usage=(100, 10)
        ),
        Reply(text="done", usage=(200, 20)),
    )
    run_id = start_run(client, "speak", tools=["elevenlabs_speak"])
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "succeeded"
    assert (run["input_tokens"], run["output_tokens"]) == (300, 30)
    assert run["cost_usd"] == pytest.approx((300 * 0.1 + 30 * 0.3) / 1e6)
    assert run["cost_status"] == "priced"


def test_unknown_mistral_model_is_unpriced(client, fake_mistral):
    fake_mistral.add(Reply(text="custom answer", usage=(1000, 500)))
    run_id = start_run(client, "hi", model="my-custom-model", tools=[])
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "succeeded"
    assert run["response"] == "custom answer"
    assert run["provider"] == "mistral"
    assert run["cost_status"] == "unpriced"
    assert not run["cost_usd"]  # unknown, never a made-up price
    assert (run["input_tokens"], run["output_tokens"]) == (1000, 500)
    assert fake_mistral.requests[0]["model"] == "my-custom-model"
    [llm] = of_type(sse_events(client, run_id), "llm_call_finished")
    assert llm["cost_status"] == "unpriced" and llm["cost_usd"] is None


def test_429_then_success_is_retried_by_the_sdk(client, fake_mistral):
    fake_mistral.add(
        Reply(status=429, headers={"Retry-After": "0"}),
        Reply(text="after the rate limit"),
    )
    t0 = time.monotonic()
    run_id = start_run(client, "busy?", tools=[])
    detail = wait_for_run(client, run_id)
    assert time.monotonic() - t0 < 10
    assert detail["run"]["status"] == "succeeded", detail["run"]
    assert detail["run"]["response"] == "after the rate limit"
    assert len(fake_mistral.requests) == 2
    assert fake_mistral.requests[0] == fake_mistral.requests[1]  # the same request, resent
    # The retry is invisible to the loop: one model call.
    assert len(of_type(sse_events(client, run_id), "llm_call_finished")) == 1


def test_persistent_500_fails_the_run_and_server_stays_healthy(client, fake_mistral):
    # With the test config (retry_initial_ms=20, retry_max_elapsed_ms=3000) the SDK
    # gives up after ~9 attempts (~5 s); 30 scripted failures is more than enough.
    fake_mistral.add(*[Reply(status=500) for _ in range(30)])
    t0 = time.monotonic()
    run_id = start_run(client, "will fail", tools=[])
    detail = wait_for_run(client, run_id, timeout=20)
    elapsed = time.monotonic() - t0
    run = detail["run"]
    assert run["status"] == "failed", run
    assert run["error"].startswith("Mistral API error 500")  # the provider's words
    assert run["response"] is None
    assert elapsed < 15
    attempts = len(fake_mistral.requests)
    assert 2 <= attempts < 30  # retried, then gave up on time, not by running out of script
    [agent] = [s for s in detail["spans"] if s["kind"] == "agent"]
    assert agent["status"] == "error" and agent["status_message"] == run["error"]
    assert not [s for s in detail["spans"] if s["kind"] == "llm"]

    events = sse_events(client, run_id)
    assert events[-1]["event"] == "run_failed"
    assert "500" in events[-1]["data"]["payload"]["error"]

    with fake_mistral.lock:
        fake_mistral.script.clear()
    assert client.get("/api/health").json() == {"status": "ok"}
    next_id = start_run(client, "are you back?", tools=[])
    nxt = wait_for_run(client, next_id)["run"]
    assert nxt["status"] == "succeeded"
    assert nxt["response"] == "Echo: are you back?"


def test_non_retryable_4xx_fails_at_once(client, fake_mistral):
    fake_mistral.add(Reply(status=400))
    t0 = time.monotonic()
    run_id = start_run(client, "bad request", tools=[])
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "failed"
    assert "400" in run["error"]
    assert len(fake_mistral.requests) == 1
    assert time.monotonic() - t0 < 5


# --- MistralProvider directly --------------------------------------------------------------

SPEAK = ToolSpec(
    name="speak",
    description="Say something.",
    parameters={"type": "object", "properties": {"text": {"type": "string"}}},
)


def collect(provider: MistralProvider, messages, tools, params) -> list[Any]:  # type: ignore[no-untyped-def]
    async def main() -> list[Any]:
        return [item async for item in provider.stream(messages, tools, params)]

    return asyncio.run(asyncio.wait_for(main(), 15))


def direct_provider(fake: FakeMistral) -> MistralProvider:
    return MistralProvider(
        api_key="k",
        server_url=fake.url,
        retry=RetryPolicy(initial_ms=10, max_elapsed_ms=2000),
    )


def test_provider_streams_text_then_completion_with_tool_calls(fake_mistral):
    fake_mistral.add(
        Reply(
            text="Calling two tools.",
            chunk_size=6,
            tool_calls=[
                {"id": "abc123xyz", "name": "speak", "arguments": {"text": "hello"}},
                {"name": "speak", "arguments": {"text": "bye", "n": 2}},
            ],
            usage=(21, 9),
        )
    )
    provider = direct_provider(fake_mistral)
    items = collect(
        provider,
        [{"role": "user", "content": "hi"}],
        [SPEAK],
        GenerationParams(model="mistral-small-latest", temperature=0.3, max_tokens=99),
    )
    *streamed, completion = items
    pieces = [p for p in streamed if isinstance(p, str)]
    assert len(pieces) == 3
    assert "".join(pieces) == "Calling two tools."
    # Then each call's arguments, as pieces of the call they belong to.
    chunks = [c for c in streamed if isinstance(c, ToolCallChunk)]
    assert streamed == pieces + chunks
    assert [(c.index, c.name) for c in chunks] == [(0, "speak"), (1, "speak")]
    assert [json.loads(c.text) for c in chunks] == [{"text": "hello"}, {"text": "bye", "n": 2}]
    assert isinstance(completion, Completion)
    assert completion.text == "Calling two tools."
    assert completion.model == "mistral-small-latest"
    assert (completion.input_tokens, completion.output_tokens) == (21, 9)
    assert completion.finish_reason == "tool_calls"
    assert len(completion.tool_calls) == 2
    first, second = completion.tool_calls
    assert (first.id, first.name, first.arguments) == ("abc123xyz", "speak", {"text": "hello"})
    assert second.name == "speak" and second.arguments == {"text": "bye", "n": 2}
    assert isinstance(second.arguments, dict) and second.id

    [body] = fake_mistral.requests
    assert body["stream"] is True
    assert body["model"] == "mistral-small-latest"
    assert body["temperature"] == 0.3 and body["max_tokens"] == 99
    assert body["tool_choice"] == "auto"
    assert body["tools"] == [SPEAK.to_mistral()]


def test_provider_plain_text_without_tools(fake_mistral):
    fake_mistral.add(Reply(text="just text", chunk_size=100))
    items = collect(
        direct_provider(fake_mistral),
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        [],
        GenerationParams(model="mistral-small-latest"),
    )
    assert items[:-1] == ["just text"]
    completion = items[-1]
    assert isinstance(completion, Completion)
    assert completion.tool_calls == () and completion.finish_reason == "stop"
    body = fake_mistral.requests[0]
    assert "tools" not in body or not body["tools"]
    assert body["messages"][0] == {"role": "system", "content": "be brief"}


def test_provider_raises_provider_error_when_retries_run_out(fake_mistral):
    fake_mistral.add(*[Reply(status=503) for _ in range(40)])
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="503"):
        collect(
            direct_provider(fake_mistral),
            [{"role": "user", "content": "hi"}],
            [],
            GenerationParams(model="mistral-small-latest"),
        )
    assert time.monotonic() - t0 < 10
    assert 2 <= len(fake_mistral.requests) < 40


def test_provider_streams_tool_call_arguments_in_pieces(fake_mistral):
    arguments = {"text": "a longer sentence to speak", "n": 3}
    fake_mistral.add(
        Reply(tool_calls=[{"name": "speak", "arguments": arguments}], args_chunk_size=5)
    )
    items = collect(
        direct_provider(fake_mistral),
        [{"role": "user", "content": "hi"}],
        [SPEAK],
        GenerationParams(model="mistral-small-latest"),
    )
    *chunks, completion = items
    assert all(isinstance(c, ToolCallChunk) for c in chunks)
    assert len([c for c in chunks if c.text]) >= 3
    # The name comes first and stays known; the pieces join to what the call carries.
    assert {(c.index, c.name) for c in chunks} == {(0, "speak")}
    assert json.loads("".join(c.text for c in chunks)) == arguments
    assert completion.tool_calls[0].arguments == arguments
