"""The local model's worker process: a crash, a hang or a hard tool schema fails one run at most.

The real SmolLM2 model runs in its real worker process; the faults are real
signals sent to that process (SIGKILL, SIGSEGV, SIGSTOP), found through the
provider's ``worker_pid``. Runs go through the real app over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator

import httpx
import pytest

from agents.providers.base import Completion, GenerationParams, ToolSpec
from agents.providers.local import LocalModel, LocalProvider
from agents.providers.local_schema import (
    MAX_STRING_REPEAT,
    SchemaRefused,
    grammar_safe_schema,
)
from agents.tools import load_tool
from app.core.settings import Settings
from tests.conftest import LOCAL_MODEL, agent_config, wait_for_run

ALL_TOOLS = ("wandb_log", "hf_list_models", "elevenlabs_speak", "ask_agent")
# Greedy SmolLM2 counts on for hundreds of tokens: a run that is surely mid-stream.
LONG = {
    "prompt": "Count from 1 to 200, separated by commas.",
    "model": LOCAL_MODEL,
    "max_tokens": 400,
    "tools": [],
}
SHORT = {"prompt": "Name a colour.", "model": LOCAL_MODEL, "max_tokens": 8, "tools": []}


@pytest.fixture
def settings(data_dir, request) -> Settings:
    """Local model only (no Mistral key), every tool on; ``param``: the worker timeout."""
    timeout = getattr(request, "param", 120.0)
    config = agent_config(
        None,
        local_models=(
            LocalModel(name=LOCAL_MODEL, n_ctx=2048, timeout_s=timeout),
            LocalModel(name="missing", gguf=str(data_dir / "missing.gguf")),
        ),
        tools={
            "wandb_log": {"project": "agentop-tests", "mode": "offline", "timeout": 60},
            "hf_list_models": {"endpoint": "http://127.0.0.1:9", "timeout": 3},
            "elevenlabs_speak": {"api_key": "", "timeout": 5},
            "ask_agent": {"max_depth": 2, "timeout": 240},
        },
    )
    return Settings(data_dir=data_dir, agent_config=config)


@pytest.fixture
def http(live_server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_server.url, headers={"X-API-Key": live_server.admin_key}, timeout=60
    ) as client:
        yield client


def provider_of(app) -> LocalProvider:  # type: ignore[no-untyped-def]
    return app.state.runner.local


def start(http: httpx.Client, body: dict) -> str:
    r = http.post("/api/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def wait_for_first_token(http: httpx.Client, run_id: str) -> None:
    """Follow the run's live events until the model has written something."""
    with http.stream("GET", f"/api/runs/{run_id}/events", timeout=120) as response:
        for line in response.iter_lines():
            if line.strip() == "event: token":
                return
            ended = line.strip() in ("event: run_finished", "event: run_failed")
            assert not ended, f"the run ended before a token: {line}"
    raise AssertionError("the event stream ended before the first token")


def assert_healthy(http: httpx.Client) -> None:
    r = http.get("/api/health", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


# -- tool schemas ------------------------------------------------------------


def test_grammar_safe_schema_caps_long_bounds_and_keeps_the_rest():
    original = load_tool("ask_agent", {}).spec.parameters
    safe = grammar_safe_schema(original)
    assert safe["properties"]["question"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_STRING_REPEAT,
    }
    assert original["properties"]["question"]["maxLength"] == 2000  # the tool's own is intact
    wandb = load_tool("wandb_log", {}).spec.parameters
    assert grammar_safe_schema(wandb) == wandb  # small bounds are left alone
    nested = {"type": "array", "items": {"type": "array", "maxItems": 500}, "maxItems": 3}
    assert grammar_safe_schema(nested)["items"]["maxItems"] < 500
    with pytest.raises(SchemaRefused, match="minLength 5000 at /properties/text"):
        grammar_safe_schema({"properties": {"text": {"type": "string", "minLength": 5000}}})


def test_a_schema_beyond_simplifying_is_left_out_before_native_code(caplog):
    provider = LocalProvider([LocalModel(name=LOCAL_MODEL, n_ctx=2048)])
    essay = ToolSpec(
        "essay",
        "Write a long essay.",
        {"type": "object", "properties": {"text": {"type": "string", "minLength": 5000}}},
    )
    verdicts = asyncio.run(provider.check_tools(LOCAL_MODEL, [essay]))
    assert "minLength 5000" in verdicts["essay"]
    assert "tool essay left out: minLength 5000" in caplog.text
    assert provider.worker_pid(LOCAL_MODEL) is None  # no model process was needed to say no


@pytest.mark.local_model
def test_every_tool_grammar_compiles_in_the_worker():
    """Each tool's grammar, built as the provider does; the raw ask_agent one is refused safely."""
    provider = LocalProvider([LocalModel(name=LOCAL_MODEL, n_ctx=2048)])
    specs = [load_tool(name, {}).spec for name in ALL_TOOLS]

    async def scenario():
        try:
            verdicts = await provider.check_tools(LOCAL_MODEL, specs)
            pid = provider.worker_pid(LOCAL_MODEL)
            worker = provider.worker(LOCAL_MODEL)
            raw = {"op": "check", "schema": load_tool("ask_agent", {}).spec.parameters}
            replies = [reply async for reply in worker.request(raw)]
            return verdicts, pid, replies, provider.worker_pid(LOCAL_MODEL)
        finally:
            await provider.close()

    verdicts, pid, replies, pid_after = asyncio.run(scenario())
    assert verdicts == dict.fromkeys(ALL_TOOLS)
    # Unsimplified, maxLength 2000 is what used to crash the server inside libllama.
    assert "refused" in replies[-1]["reason"]
    assert pid is not None and pid_after == pid  # the worker lived through it
    assert "llama_cpp" not in sys.modules


@pytest.mark.local_model
def test_ask_agent_runs_on_the_local_model(client):
    r = client.post(
        "/api/runs",
        json={
            "prompt": "Use the ask_agent tool to ask a helper agent: what is 2+2?",
            "tools": ["ask_agent"],
            "model": LOCAL_MODEL,
            "max_tokens": 16,
        },
    )
    assert r.status_code == 201, r.text
    detail = wait_for_run(client, r.json()["run_id"], timeout=240)
    run = detail["run"]
    assert client.get("/api/health").json() == {"status": "ok"}
    assert run["status"] in ("succeeded", "failed")
    if run["status"] == "failed":
        assert "crashed" not in run["error"] and "timed out" not in run["error"], run["error"]
    # The model picked the tool and a helper run answered it.
    assert [c["name"] for c in detail["tool_calls"]][:1] == ["ask_agent"], detail["tool_calls"]
    children = [x for x in client.get("/api/runs").json()["runs"] if x["parent_run_id"]]
    assert children, "ask_agent started no helper run"
    assert "llama_cpp" not in sys.modules


# -- crashes and hangs -------------------------------------------------------


@pytest.mark.local_model
def test_worker_killed_mid_run_fails_that_run_only(app, http):
    run_id = start(http, LONG)
    wait_for_first_token(http, run_id)
    assert_healthy(http)
    pid = provider_of(app).worker_pid(LOCAL_MODEL)
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)

    run = wait_for_run(http, run_id, timeout=60)["run"]
    assert run["status"] == "failed"
    assert "the local model process crashed (signal 9" in run["error"], run["error"]
    assert_healthy(http)

    after = wait_for_run(http, start(http, SHORT), timeout=120)["run"]
    assert after["status"] == "succeeded", after["error"]
    assert provider_of(app).worker_pid(LOCAL_MODEL) not in (None, pid)  # a fresh worker


@pytest.mark.local_model
def test_a_segfault_between_runs_is_survived(app, http):
    first = wait_for_run(http, start(http, SHORT), timeout=120)["run"]
    assert first["status"] == "succeeded", first["error"]
    pid = provider_of(app).worker_pid(LOCAL_MODEL)
    os.kill(pid, signal.SIGSEGV)
    again = wait_for_run(http, start(http, SHORT), timeout=120)["run"]
    assert again["status"] == "succeeded", again["error"]
    assert provider_of(app).worker_pid(LOCAL_MODEL) != pid


@pytest.mark.local_model
@pytest.mark.parametrize("settings", [5.0], indirect=True)
def test_a_hung_worker_times_out_and_is_replaced(app, http):
    run_id = start(http, LONG)
    wait_for_first_token(http, run_id)
    pid = provider_of(app).worker_pid(LOCAL_MODEL)
    os.kill(pid, signal.SIGSTOP)  # frozen mid-generation, as a deadlocked native call
    try:
        assert_healthy(http)
        run = wait_for_run(http, run_id, timeout=60)["run"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert run["status"] == "failed"
    assert "the local model timed out after 5 s" in run["error"], run["error"]
    after = wait_for_run(http, start(http, SHORT), timeout=120)["run"]
    assert after["status"] == "succeeded", after["error"]
    assert provider_of(app).worker_pid(LOCAL_MODEL) != pid


@pytest.mark.local_model
def test_a_model_that_does_not_load_fails_the_run_clearly(client):
    r = client.post("/api/runs", json={**SHORT, "model": "missing"})
    assert r.status_code == 201, r.text
    run = wait_for_run(client, r.json()["run_id"], timeout=60)["run"]
    assert run["status"] == "failed"
    assert "GGUF file not found" in run["error"], run["error"]


# -- cancellation --------------------------------------------------------------


def _cancel_mid_stream(
    provider: LocalProvider, freeze: bool
) -> tuple[int | None, int | None, list]:
    """Cancel a long generation after three tokens, then make a short call; pids and its items."""

    async def scenario():
        got: asyncio.Queue = asyncio.Queue()
        long = GenerationParams(model=LOCAL_MODEL, temperature=0.0, max_tokens=400)
        messages = [{"role": "user", "content": LONG["prompt"]}]

        async def consume():
            async for item in provider.stream(messages, [], long):
                await got.put(item)

        try:
            task = asyncio.create_task(consume())
            for _ in range(3):
                await got.get()
            pid = provider.worker_pid(LOCAL_MODEL)
            if freeze:  # a worker that can no longer answer the request to stop
                os.kill(pid, signal.SIGSTOP)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            short = GenerationParams(model=LOCAL_MODEL, temperature=0.0, max_tokens=8)
            hello = [{"role": "user", "content": "Say hello."}]
            items = [i async for i in provider.stream(hello, [], short)]
            return pid, provider.worker_pid(LOCAL_MODEL), items
        finally:
            await provider.close()

    return asyncio.run(scenario())


@pytest.mark.local_model
def test_cancelling_a_run_stops_its_generation():
    provider = LocalProvider([LocalModel(name=LOCAL_MODEL, n_ctx=2048)])
    pid, pid_after, items = _cancel_mid_stream(provider, freeze=False)
    *pieces, final = items
    # The next call got its own answer, none of the cancelled one's tokens.
    assert isinstance(final, Completion) and final.text == "".join(pieces).strip()
    assert pid is not None and pid_after == pid  # it stopped when told: not killed


@pytest.mark.local_model
def test_a_worker_that_does_not_stop_is_killed():
    provider = LocalProvider([LocalModel(name=LOCAL_MODEL, n_ctx=2048)])
    pid, pid_after, items = _cancel_mid_stream(provider, freeze=True)
    assert isinstance(items[-1], Completion)
    assert pid_after not in (None, pid)
