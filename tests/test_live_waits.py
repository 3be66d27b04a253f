"""Every wait of a run is explained, live: model calls, tool calls being written, tools running.

Runs go through the real app under uvicorn with the real ``mistralai`` SDK
against the fake Mistral server, whose scripted replies stream a tool call's
arguments in pieces, a fixed delay apart; the tool (``hf_list_models``) asks
a fake Hub on 127.0.0.1 that answers after a delay. The stored log is read
from ``GET /api/runs/{id}/events``, what a page sees from the HTML stream
``GET /runs/{id}/events``. The local model's part runs the real SmolLM2.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from agents.events import (
    Event,
    LLMCallStarted,
    ModelLoaded,
    ModelLoading,
    RunStarted,
    TokenDelta,
    ToolCallDelta,
)
from agents.events import ToolCallStarted as Started
from agents.loop import RunRequest, run_agent
from agents.providers.local import LocalModel, LocalProvider
from agents.tools import load_tool
from app.core.formats import format_elapsed
from app.core.settings import Settings
from app.runs.activity import current_activity
from app.runs.terminal import print_event
from app.store.events import record_event
from app.store.runs import create_run
from tests.conftest import LOCAL_MODEL, MISTRAL_MODEL, agent_config
from tests.fake_mistral import Reply
from tests.loopback import LoopbackServer, send_json
from tests.test_sse import SSE, iter_sse

ARGS = {"search": "bert base uncased", "limit": 3}
HUB_DELAY_S = 1.6  # long enough for the "calling" line to tick at least once


class SlowHub(LoopbackServer):
    """The Hub's model search, answering after ``HUB_DELAY_S`` (a slow network peer)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                time.sleep(HUB_DELAY_S)
                send_json(self, 200, [{"id": "google-bert/bert-base-uncased"}])

        super().__init__(Handler)


@pytest.fixture
def hub() -> Iterator[SlowHub]:
    server = SlowHub().start()
    yield server
    server.stop()


@pytest.fixture
def settings(data_dir, fake_mistral, hub) -> Settings:  # type: ignore[no-untyped-def]
    tools = {"hf_list_models": {"endpoint": hub.url, "timeout": 10}}
    return Settings(data_dir=data_dir, agent_config=agent_config(fake_mistral.url, tools=tools))


@pytest.fixture
def http(live_server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=live_server.url,
        headers={"X-API-Key": live_server.admin_key},
        timeout=httpx.Timeout(10.0),
    ) as client:
        yield client


def start_tool_run(http: httpx.Client, fake_mistral) -> str:  # type: ignore[no-untyped-def]
    fake_mistral.add(
        Reply(
            tool_calls=[{"name": "hf_list_models", "arguments": ARGS}],
            args_chunk_size=6,
            delay_s=0.25,
            usage=(40, 12),
        ),
        Reply(text="I found bert-base-uncased.", chunk_size=4, usage=(60, 7)),
    )
    r = http.post(
        "/api/runs",
        json={"prompt": "find bert models", "model": MISTRAL_MODEL, "tools": ["hf_list_models"]},
    )
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def html_stream(http: httpx.Client, run_id: str, after: int | None = None) -> list[SSE]:
    """The run page's stream, read live to its end."""
    params = {"after": after} if after is not None else None
    with http.stream("GET", f"/runs/{run_id}/events", params=params) as response:
        assert response.status_code == 200
        return list(iter_sse(response))


def stored_events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """The API's stream: stored events only, each with its id (no activity messages)."""
    with http.stream("GET", f"/api/runs/{run_id}/events") as response:
        messages = list(iter_sse(response))
    assert all(m.id is not None and m.event != "activity" for m in messages)
    return [m.json for m in messages]


def payloads(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in events if e["type"] == kind]


def activity_lines(messages: list[SSE]) -> list[str]:
    """What the activity line said, message by message, as a person reads it."""
    lines = []
    for m in messages:
        if m.event == "activity":
            line = m.data.split("<div hx-swap-oob")[0]  # the tool-call draft is set apart
            lines.append(" ".join(re.sub(r"<[^>]+>", "", line).split()))
    return lines


def test_tool_call_arguments_stream_and_every_wait_is_explained(http, fake_mistral):
    run_id = start_tool_run(http, fake_mistral)
    messages = html_stream(http, run_id)  # opened at once: followed live
    events = stored_events(http, run_id)

    # The stored log: the call starts, its arguments stream, then the tool runs.
    types = [e["type"] for e in events]
    first = types.index
    assert first("llm_call_started") < first("tool_call_delta") < first("tool_call_started")
    assert first("tool_call_delta") < first("llm_call_finished") < first("tool_call_started")
    second_call = types.index("llm_call_started", first("llm_call_started") + 1)
    assert first("tool_call_started") < first("tool_call_finished") < second_call
    deltas = payloads(events, "tool_call_delta")
    assert len([d for d in deltas if d["text"]]) >= 3  # in pieces, not one blob
    assert {d["name"] for d in deltas} == {"hf_list_models"}
    [started] = payloads(events, "tool_call_started")
    assert json.loads("".join(d["text"] for d in deltas)) == started["arguments"] == ARGS
    # The pieces were recorded as they came (the fake server waits 0.25 s between them).
    assert deltas[-1]["at"] - deltas[0]["at"] >= 1.0
    [finished] = payloads(events, "tool_call_finished")
    assert finished["error"] is None and "bert-base-uncased" in finished["result"]
    assert [p["round"] for p in payloads(events, "llm_call_started")] == [0, 1]

    # The page's stream: stored events with their ids, activity messages without.
    stored = [m for m in messages if m.id is not None]
    assert [int(m.id) for m in stored] == list(range(1, len(events) + 1))
    activity = [m for m in messages if m.event == "activity"]
    assert activity and all(m.id is None for m in activity)
    lines = activity_lines(messages)
    assert any(re.fullmatch(r"Waiting for the model… \d+ s", line) for line in lines), lines
    assert any(
        re.fullmatch(r"Writing a tool call: hf_list_models… \d+ s", line) for line in lines
    ), lines
    calling = [line for line in lines if line.startswith("Calling hf_list_models…")]
    assert calling[0] == "Calling hf_list_models… 0 s"
    # The Hub takes 1.6 s: the line ticked while the tool ran.
    assert any(re.fullmatch(r"Calling hf_list_models… [1-9]\d* s", line) for line in calling)
    assert "Writing the answer…" in lines
    assert lines[-1] == ""  # the run ended: the line is empty
    assert messages[-1].event == "stream_end"
    # Each piece of the arguments is appended to the tool-call draft as it comes.
    pieces = [m for m in messages if m.event == "tool_call_delta"]
    assert len(pieces) == len(deltas)
    assert any("<span>" in m.data for m in pieces)


def test_tokens_out_grows_per_token_and_exact_usage_replaces_it(http, fake_mistral):
    run_id = start_tool_run(http, fake_mistral)
    messages = html_stream(http, run_id)
    events = stored_events(http, run_id)

    # Round 0 writes the tool call, round 1 the answer: the live count grows per piece,
    # and round 1 counts on from the 12 tokens round 0 reported.
    counted = [
        e["payload"]["run_output_tokens"]
        for e in events
        if e["type"] in ("token", "tool_call_delta") and e["payload"]["text"]
    ]
    pieces = len(counted)
    assert counted == sorted(counted) and len(set(counted)) == pieces
    tokens = payloads(events, "token")
    assert tokens[0]["run_output_tokens"] == 12 + 1
    assert tokens[-1]["run_output_tokens"] == 12 + len(tokens)

    # The page shows the estimate as it streams, marked as live ...
    live = [m.data for m in messages if m.event == "token"]
    assert all('id="tokens-out"' in d and 'hx-swap-oob="true"' in d for d in live)
    assert re.search(r"≈ 13 <span class=\"note\">live</span>", live[0]), live[0]
    # ... and the provider's exact usage when the call ends (12 + 7).
    [*_, last_call] = [m.data for m in messages if m.event == "llm_call_finished"]
    assert re.search(r'id="tokens-out"[^>]*>19</span>', last_call), last_call
    run = http.get(f"/api/runs/{run_id}").json()["run"]
    assert run["output_tokens"] == 19


def test_a_stream_resumed_mid_wait_says_what_the_run_was_doing(http, fake_mistral):
    run_id = start_tool_run(http, fake_mistral)
    html_stream(http, run_id)  # to the end
    events = stored_events(http, run_id)
    seq_of = {e["type"]: e["seq"] for e in reversed(events)}  # first of each type
    third_piece = [e for e in events if e["type"] == "tool_call_delta"][3]
    written = "".join(
        e["payload"]["text"]
        for e in events
        if e["type"] == "tool_call_delta" and e["seq"] <= third_piece["seq"]
    )

    # A page reloaded while the tool ran: the first message is the line, with no id.
    first = html_stream(http, run_id, after=seq_of["tool_call_started"])[0]
    assert first.event == "activity" and first.id is None
    assert "Calling <code>hf_list_models</code>…" in first.data
    # Reloaded while the call was being written: the line and the arguments so far.
    first = html_stream(http, run_id, after=third_piece["seq"])[0]
    assert "Writing a tool call: <code>hf_list_models</code>…" in first.data
    draft = first.data.split('<div hx-swap-oob="innerHTML:#tool-draft">')[1].split("</div>")[0]
    assert html.unescape(draft) == written
    # Reloaded after the run ended: nothing is going on, no line is sent.
    rest = html_stream(http, run_id, after=events[-2]["seq"])
    assert [m.event for m in rest] == ["run_finished", "stream_end"]


def test_current_activity_is_folded_from_the_stored_log(db):
    """The page's line, from the log alone: each wait, and nothing once a step ends."""
    run_id = "r-activity"
    db.write_sync(create_run, {"id": run_id, "status": "running", "prompt": "hi"})
    t0 = 1_700_000_000.0
    log = [
        RunStarted(model="m", provider="local", params={}, at=t0),
        LLMCallStarted(model="m", round=0, at=t0 + 1),
        ModelLoading(model="m", at=t0 + 2),
        ToolCallDelta(round=0, index=0, name="wandb_log", text="", at=t0 + 9),
        ToolCallDelta(round=0, index=0, name="wandb_log", text='{"a":', at=t0 + 10),
        ToolCallDelta(round=0, index=0, name="wandb_log", text=" 1}", at=t0 + 11),
        Started(call_id="c1", name="wandb_log", arguments={"a": 1}, at=t0 + 12),
        TokenDelta(text="x", at=t0 + 20),
    ]
    for seq, event in enumerate(log, 1):
        db.write_sync(record_event, run_id, seq, event.to_dict())

    def at(seq: int) -> tuple[str, str, str, float] | None:
        state = db.read_sync(current_activity, run_id, seq)
        return None if state is None else (state.kind, state.name, state.args, state.since)

    assert at(1) is None
    assert at(2) == ("waiting", "m", "", t0 + 1)
    assert at(3) == ("loading", "m", "", t0 + 2)
    assert at(6) == ("tool_args", "wandb_log", '{"a": 1}', t0 + 9)  # since the first piece
    assert at(7) == ("calling", "wandb_log", "", t0 + 12)
    assert at(8) == ("writing", "", "", t0 + 20)
    assert format_elapsed(7.9) == "7 s" and format_elapsed(125) == "2 min 05 s"


class ListSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)


def test_the_local_model_says_it_loads_and_streams_its_tool_call():
    """The real SmolLM2 on a cold provider: the load is announced, the arguments stream."""
    provider = LocalProvider([LocalModel(name=LOCAL_MODEL, n_ctx=2048)])
    # Nothing listens on port 9: the tool fails at once, which is all this test needs of it.
    tool = load_tool("hf_list_models", {"endpoint": "http://127.0.0.1:9", "timeout": 2})
    request = RunRequest(
        prompt="List models on the Hugging Face Hub that match 'bert'.",
        model=LOCAL_MODEL,
        temperature=0.0,
        max_tokens=8,
        max_rounds=2,
    )
    sink = ListSink()

    async def go() -> None:
        try:
            await run_agent(request, provider, [tool], sink)
        finally:
            await provider.close()

    asyncio.run(asyncio.wait_for(go(), 240))
    types = [e.type for e in sink.events]
    assert types.index("model_loading") == types.index("llm_call_started") + 1
    assert types.index("model_loaded") < types.index("tool_call_delta")
    # Loaded once: the second call finds the model loaded and says nothing of it.
    assert types.count("model_loading") == 1 and types.count("llm_call_started") == 2
    [loaded] = [e for e in sink.events if isinstance(e, ModelLoaded)]
    assert loaded.model == LOCAL_MODEL and loaded.latency_ms > 0
    deltas = [e for e in sink.events if isinstance(e, ToolCallDelta)]
    assert {d.name for d in deltas} == {"hf_list_models"}
    assert len([d for d in deltas if d.text]) >= 3  # token by token, not one blob
    [started] = [e for e in sink.events if isinstance(e, Started)]
    assert json.loads("".join(d.text for d in deltas)) == started.arguments
    assert isinstance(started.arguments.get("search"), str)
    counts = [d.run_output_tokens for d in deltas if d.text]
    assert counts == list(range(1, len(counts) + 1))


def test_the_terminal_says_a_model_loads_on_its_status_stream():
    out, status = io.StringIO(), io.StringIO()
    for kind, payload in [
        ("llm_call_started", {"model": "m", "round": 0}),
        ("model_loading", {"model": "smollm2-135m"}),
        ("model_loaded", {"model": "smollm2-135m", "latency_ms": 1450.0}),
        ("tool_call_delta", {"name": "t", "text": '{"a"', "round": 0, "index": 0}),
        ("token", {"text": "Hi"}),
    ]:
        print_event(kind, payload, out, status)
    assert out.getvalue() == "Hi"  # the answer alone, as a pipe wants it
    loading, loaded = status.getvalue().splitlines()
    assert loading == "… loading model smollm2-135m"
    assert loaded.startswith("… model smollm2-135m loaded in 1")  # 1.45 s, however formatted
