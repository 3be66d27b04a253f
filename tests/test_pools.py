"""Pools sized for their work: tools on their own bounded pool, helpers that hold no thread.

Nested ``ask_agent`` helpers filling every run slot all end; a tool hung past
its time limit fails that call while later calls still run; a parent that
stops waiting stops its helper; queued runs are bounded (429).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from litestar.testing import TestClient

from agents.tools import ToolOutput, ToolPool, ToolTimedOut
from app.core.settings import Settings
from app.main import create_app
from app.runs.subagents import PARENT_STOPPED
from app.store.statuses import TERMINAL
from tests.conftest import agent_config, api_client, csrf, login, wait_for_run
from tests.fake_mistral import FakeMistral, Reply
from tests.receivers import wait_until


class NestingMistral(FakeMistral):
    """Answers from what each request holds, so runs interleaving in any order read one script.

    Offered ``ask_agent``: ask a helper. Handed a tool result: answer with it.
    Otherwise (a helper at the maximum depth): answer outright.
    """

    def _next(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append(body)
        last = body["messages"][-1]
        offered = {t["function"]["name"] for t in body.get("tools") or []}
        if last["role"] == "tool":
            return Reply(text=f"via helper: {last['content']}")
        if "ask_agent" in offered:
            question = f"help with: {last['content']}"[:500]
            return Reply(tool_calls=[{"name": "ask_agent", "arguments": {"question": question}}])
        return Reply(text="leaf answer")


@pytest.fixture
def nesting_mistral() -> Iterator[NestingMistral]:
    server = NestingMistral().start()
    yield server
    server.stop()


def all_runs(client: TestClient) -> list[dict[str, Any]]:
    return client.get("/api/runs", params={"limit": 200}).json()["runs"]


def test_nested_helpers_in_every_slot_all_end(tmp_path, nesting_mistral):
    """Two slots, four runs, each nesting helpers four deep: every run and every call ends well.

    Helpers take no slot and hold no thread while they wait, so neither the
    run slots nor any thread pool can be exhausted by parents waiting on children.
    """
    depth = 4
    settings = Settings(
        data_dir=tmp_path / "nest",
        auth=False,
        max_concurrent_runs=2,
        agent_config=agent_config(
            nesting_mistral.url, tools={"ask_agent": {"max_depth": depth, "timeout": 30}}
        ),
    )
    with api_client(settings, "") as client:
        top = [
            client.post("/api/runs", json={"prompt": f"task {i}"}).json()["run_id"]
            for i in range(4)
        ]
        for run_id in top:
            detail = wait_for_run(client, run_id, timeout=60)
            assert detail["run"]["status"] == "succeeded", detail["run"]
            [call] = detail["tool_calls"]
            assert call["status"] == "ok", call
            assert call["result"] == "via helper: " * (depth - 1) + "leaf answer"
        runs = all_runs(client)
        assert len(runs) == 4 * (depth + 1)
        assert {r["status"] for r in runs} == {"succeeded"}
        depths = sorted((r["params"].get("extra") or {}).get("agent_depth", 0) for r in runs)
        assert depths == sorted(list(range(depth + 1)) * 4)


class StallingHub:
    """A Hugging Face Hub on loopback: ``search=stall`` trickles a body that never ends.

    A byte every 0.1 s keeps the client's read timeout from ever firing, as a
    stalled upstream does; the connection is dropped at ``release``.
    """

    def __init__(self) -> None:
        self.released = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if "search=stall" in self.path:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"[")
                    while not hub.released.wait(0.1):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    self.close_connection = True
                    return
                body = b'[{"id": "google-bert/bert-base-uncased"}]'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stalling_hub() -> Iterator[StallingHub]:
    hub = StallingHub()
    yield hub
    hub.stop()


def test_tools_hung_past_their_limit_fail_and_later_calls_still_run(
    tmp_path, fake_mistral, stalling_hub
):
    """More stalled calls than asyncio's default pool has threads; the next call runs anyway."""
    stalled = min(32, (os.cpu_count() or 1) + 4) + 1  # one more than asyncio.to_thread has
    hf = {"endpoint": stalling_hub.url, "timeout": 0.5}
    settings = Settings(
        data_dir=tmp_path / "hang",
        auth=False,
        tool_threads=stalled,
        agent_config=agent_config(fake_mistral.url, tools={"hf_list_models": hf}),
    )
    stall = {"name": "hf_list_models", "arguments": {"search": "stall"}}
    search = {"name": "hf_list_models", "arguments": {"search": "bert"}}
    fake_mistral.add(
        Reply(tool_calls=[stall] * stalled + [search]),
        Reply(tool_calls=[search]),
        Reply(text="done"),
    )
    with api_client(settings, "") as client:
        run_id = client.post("/api/runs", json={"prompt": "search the hub"}).json()["run_id"]
        detail = wait_for_run(client, run_id, timeout=60)
        assert detail["run"]["status"] == "succeeded"
        calls = detail["tool_calls"]
        assert [c["error"] for c in calls[:stalled]] == ["timed out after 0.5s"] * stalled
        assert [(c["status"], c["error"]) for c in calls[stalled:]] == [("ok", None)] * 2
        assert calls[-1]["result"] == "google-bert/bert-base-uncased"
        # The stalled calls' threads are still out, left to finish on their own...
        pool = client.app.state.runner.tool_pool
        assert pool.abandoned == stalled
        stalling_hub.released.set()
        # ...and come back once the upstream lets go.
        wait_until(lambda: pool.abandoned == 0, 10, "the stalled calls' threads to come back")


def test_the_pool_refuses_calls_while_all_spare_threads_are_stuck():
    """The documented bound: ``threads`` calls may be stuck for free; past that, new calls fail fast."""
    stuck = threading.Event()

    def hang() -> ToolOutput:
        stuck.wait(10)
        return ToolOutput("late")

    async def main() -> None:
        pool = ToolPool(threads=1)
        for _ in range(2):  # the spare thread, then the pool's own: both stuck
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pool.run(hang)
        assert pool.abandoned == 2
        with pytest.raises(RuntimeError, match="still stuck past their time limit"):
            await pool.run(lambda: ToolOutput("refused"))
        stuck.set()
        while pool.abandoned:
            await asyncio.sleep(0.01)
        assert (await pool.run(lambda: ToolOutput("runs again"))).text == "runs again"
        pool.shutdown()

    asyncio.run(main())


def test_a_tools_own_timeout_error_is_not_the_time_limit():
    async def main() -> None:
        from agents.tools import load_tool

        tool = load_tool("hf_list_models", {"endpoint": "http://127.0.0.1:9", "timeout": 5})
        with pytest.raises(Exception) as raised:
            await tool.invoke({"search": "x"})
        assert not isinstance(raised.value, ToolTimedOut)

    asyncio.run(main())


@pytest.fixture
def helper_settings(tmp_path, fake_mistral) -> Settings:
    tools = {"ask_agent": {"max_depth": 1, "timeout": 1}}
    return Settings(
        data_dir=tmp_path / "helpers",
        auth=False,
        agent_config=agent_config(fake_mistral.url, tools=tools),
    )


def children_of(client: TestClient, parent_id: str) -> list[dict[str, Any]]:
    return [r for r in all_runs(client) if r["parent_run_id"] == parent_id]


def test_a_helper_past_its_time_limit_is_stopped(helper_settings, fake_mistral):
    """The parent's ask_agent call times out: the helper is interrupted, the parent goes on."""
    fake_mistral.add(
        Reply(tool_calls=[{"name": "ask_agent", "arguments": {"question": "Think slowly"}}]),
        Reply(text="a very slow helper answer " * 4, chunk_size=4, delay_s=0.5),
        Reply(text="The helper took too long."),
    )
    with api_client(helper_settings, "") as client:
        r = client.post("/api/runs", json={"prompt": "Ask a slow helper"})
        parent = wait_for_run(client, r.json()["run_id"])
        assert parent["run"]["status"] == "succeeded"
        [call] = parent["tool_calls"]
        assert call["status"] == "error" and call["error"] == "timed out after 1s"
        [child] = children_of(client, parent["run"]["id"])
        child = wait_for_run(client, child["id"])["run"]
        assert child["status"] == "interrupted" and child["error"] == PARENT_STOPPED


def test_cancelling_a_parent_cancels_its_helper(helper_settings, fake_mistral):
    helper_settings.agents().tools["ask_agent"]["timeout"] = 60
    fake_mistral.add(
        Reply(tool_calls=[{"name": "ask_agent", "arguments": {"question": "Think slowly"}}]),
        Reply(text="a very slow helper answer " * 8, chunk_size=4, delay_s=0.5),
    )
    with api_client(helper_settings, "") as client:
        parent_id = client.post("/api/runs", json={"prompt": "Ask a slow helper"}).json()["run_id"]
        [child] = wait_until(lambda: children_of(client, parent_id), 20, "the helper run")
        runner = client.app.state.runner
        client.blocking_portal.call(runner.cancel, parent_id, "interrupted: stopped by a test")
        parent = wait_for_run(client, parent_id)["run"]
        assert (
            parent["status"] == "interrupted"
            and parent["error"] == "interrupted: stopped by a test"
        )
        child = wait_for_run(client, child["id"])["run"]
        assert child["status"] == "interrupted" and child["error"] == PARENT_STOPPED


def test_a_full_queue_answers_429_and_the_form_says_why(settings, keys, fake_mistral):
    settings.max_concurrent_runs = 1
    settings.max_queued_runs = 1
    slow = Reply(text="streaming slowly " * 3, chunk_size=4, delay_s=0.2)
    fake_mistral.add(slow, slow)
    api = {"X-API-Key": keys["admin"]}
    with TestClient(create_app(settings)) as client:
        running = client.post("/api/runs", json={"prompt": "one"}, headers=api)
        queued = client.post("/api/runs", json={"prompt": "two"}, headers=api)
        assert running.status_code == queued.status_code == 201
        refused = client.post("/api/runs", json={"prompt": "three"}, headers=api)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert "too many runs are waiting" in refused.json()["detail"]

        login(client, keys["admin"])
        form = client.post(
            "/runs",
            data={"prompt": "four", "_csrf_token": csrf(client)},
            headers={"HX-Request": "true"},
        )
        assert form.status_code == 422
        assert "too many runs are waiting" in form.text and 'role="alert"' in form.text

        for r in (running, queued):
            assert wait_for_run(client, r.json()["run_id"])["run"]["status"] in TERMINAL
        # Places are given back as runs end.
        again = client.post("/api/runs", json={"prompt": "five"}, headers=api)
        assert again.status_code == 201


def test_the_schema_documents_the_refusals_of_post_runs(client):
    """API clients learn from /schema that a run can be refused with 429 (and 400, 503)."""
    responses = client.get("/schema/openapi.json").json()["paths"]["/api/runs"]["post"]["responses"]
    assert {"201", "400", "429", "503"} <= set(responses)
    assert "queued" in responses["429"]["description"]
