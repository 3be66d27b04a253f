"""Sessions (totals kept by triggers, list and page) and multi-agent runs (ask_agent child runs)."""

import pytest
from bs4 import BeautifulSoup
from sqlite_utils import Database

from app.core.settings import Settings
from app.sessions.queries import get_session, list_sessions, session_by_name
from app.store.events import record_event
from app.store.migrations.m0001_core import core
from app.store.migrations.m0002_auth import auth
from app.store.migrations.m0003_replay_sessions import replay_sessions
from app.store.runs import create_run
from tests.conftest import MISTRAL_MODEL, agent_config, api_client, wait_for_run
from tests.fake_mistral import Reply

pytestmark = pytest.mark.both_backends


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


def test_session_totals_follow_the_runs(db):
    """Tokens, cost and outcomes land on the session row in the run's own transaction."""

    def write(conn):
        create_run(conn, {"id": "a", "session_id": "s1", "prompt": "x", "started_at": 100.0})
        create_run(conn, {"id": "b", "session_id": "s1", "prompt": "y", "started_at": 200.0})
        create_run(conn, {"id": "c", "session_id": None, "prompt": "z", "started_at": 300.0})
        for seq, event in enumerate(
            [
                {
                    "type": "run_started",
                    "at": 101,
                    "model": MISTRAL_MODEL,
                    "provider": "mistral",
                    "params": {},
                },
                {
                    "type": "llm_call_finished",
                    "at": 102,
                    "model": MISTRAL_MODEL,
                    "provider": "mistral",
                    "input_tokens": 1000,
                    "output_tokens": 200,
                    "latency_ms": 5.0,
                },
                {"type": "run_finished", "at": 103, "response": "ok"},
            ],
            start=1,
        ):
            record_event(conn, "a", seq, event)
        record_event(conn, "b", 1, {"type": "run_failed", "at": 201, "error": "boom"})

    db.write_sync(write)
    s = db.read_sync(session_by_name, "s1")
    assert (s["runs"], s["finished"], s["failed"], s["active"]) == (2, 2, 1, 0)
    assert (s["input_tokens"], s["output_tokens"], s["total_tokens"]) == (1000, 200, 1200)
    assert s["cost_usd"] > 0 and s["failure_rate"] == 0.5
    assert (s["created_at"], s["last_run_at"]) == (100.0, 200.0)
    assert [x["name"] for x in db.read_sync(list_sessions)] == ["s1"]

    def delete(conn):
        conn.execute("delete from events where run_id = 'b'")
        conn.execute("delete from runs where id = 'b'")

    db.write_sync(delete)
    s = db.read_sync(get_session, s["id"])
    assert (s["runs"], s["failed"], s["failure_rate"]) == (1, 0, 0.0)


def test_migration_backfills_sessions_of_existing_runs():
    conn = Database(memory=True)
    core(conn)
    auth(conn)
    conn["runs"].insert_all(
        [
            {
                "id": "a",
                "session_id": "old",
                "status": "failed",
                "started_at": 1.0,
                "input_tokens": 5,
            },
            {
                "id": "b",
                "session_id": "old",
                "status": "running",
                "started_at": 2.0,
                "output_tokens": 7,
            },
            {"id": "c", "status": "succeeded", "started_at": 3.0, "prompt": "find me"},
        ]
    )
    replay_sessions(conn)
    [row] = list(conn.query("select * from run_sessions"))
    assert (row["name"], row["runs"], row["finished"], row["failed"]) == ("old", 2, 1, 1)
    assert (row["input_tokens"], row["output_tokens"]) == (5, 7)
    assert [
        r["rowid"] for r in conn.query("select rowid from runs_fts where runs_fts match 'find'")
    ]


def test_sessions_pages_and_api(client, fake_mistral):
    fake_mistral.add(
        Reply(text="one", usage=(10, 2)), Reply(status=400), Reply(text="three", usage=(30, 4))
    )
    for prompt in ("first", "second"):
        r = client.post("/api/runs", json={"prompt": prompt, "session": "exp-42", "tools": []})
        wait_for_run(client, r.json()["run_id"])
    r = client.post("/api/runs", json={"prompt": "other", "session": "exp-43", "tools": []})
    wait_for_run(client, r.json()["run_id"])

    body = client.get("/api/sessions").json()
    assert body["total"] == 2 and [s["name"] for s in body["sessions"]] == ["exp-43", "exp-42"]
    exp = body["sessions"][1]
    assert (exp["runs"], exp["failed"], exp["failure_rate"]) == (2, 1, 0.5)
    assert exp["total_tokens"] == 12
    detail = client.get(f"/api/sessions/{exp['id']}").json()
    assert [r["prompt"] for r in detail["runs"]] == ["second", "first"]
    assert detail["models"][0]["model"] == MISTRAL_MODEL
    assert client.get("/api/sessions/999").status_code == 404

    page = soup(client.get("/sessions"))
    rows = page.select("#sessions-table tbody tr")
    assert [r.select_one("a").text for r in rows] == ["exp-43", "exp-42"]
    assert "50.0%" in rows[1].text
    assert page.select_one("nav a[href='/sessions'][aria-current=page]")
    page = soup(client.get(f"/sessions/{exp['id']}"))
    assert page.select_one("#session-runs").text == "2"
    assert page.select_one("#session-failure-rate").text.strip() == "50.0%"
    assert len(page.select("#runs-table tbody tr")) == 2
    assert client.get("/sessions/999").status_code == 404
    r = client.get("/sessions/find", params={"name": "exp-42"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/sessions/{exp['id']}"
    assert client.get("/sessions/find", params={"name": "nope"}).status_code == 404
    fragment = client.get("/sessions?page=1", headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<div id="sessions-table">')


@pytest.fixture
def agent_settings(tmp_path, fake_mistral, database_url):
    tools = {
        "ask_agent": {"max_depth": 1, "timeout": 30},
        "elevenlabs_speak": {"api_key": "", "timeout": 5},
    }
    return Settings(
        data_dir=tmp_path / "agents",
        database_url=database_url,
        auth=False,
        agent_config=agent_config(fake_mistral.url, tools=tools),
    )


def test_an_agent_asks_another_agent(agent_settings, fake_mistral):
    fake_mistral.add(
        Reply(
            text="Let me ask a helper.",
            tool_calls=[{"name": "ask_agent", "arguments": {"question": "What is 6 x 7?"}}],
        ),
        Reply(text="42", usage=(20, 1)),  # the helper's answer
        Reply(text="The helper says 42."),
    )
    with api_client(agent_settings, "") as client:
        r = client.post("/api/runs", json={"prompt": "Ask a helper for 6 x 7", "session": "team"})
        parent = wait_for_run(client, r.json()["run_id"])
        assert parent["run"]["status"] == "succeeded"
        [call] = parent["tool_calls"]
        assert call["name"] == "ask_agent" and call["result"] == "42" and call["status"] == "ok"
        # The helper's own request: the question, and no ask_agent at max_depth 1.
        helper_request = fake_mistral.requests[1]
        assert helper_request["messages"][-1] == {"role": "user", "content": "What is 6 x 7?"}
        assert [t["function"]["name"] for t in helper_request.get("tools") or []] == [
            "elevenlabs_speak"
        ]
        children = client.get("/api/runs", params={"session": "team"}).json()["runs"]
        child = next(c for c in children if c["id"] != parent["run"]["id"])
        assert child["parent_run_id"] == parent["run"]["id"] and child["parent_kind"] == "agent"
        assert child["source"] == "agent" and child["params"]["extra"] == {"agent_depth": 1}

        page = soup(client.get(f"/runs/{parent['run']['id']}"))
        nested = page.select("#child-runs li.child-run")
        assert [li["id"] for li in nested] == [f"child-{child['id']}"]
        assert "What is 6 x 7?" in nested[0].text and "42" in nested[0].text
        child_page = soup(client.get(f"/runs/{child['id']}"))
        assert "Helper run started by" in child_page.select_one(".lineage-parent").text
        fragment = client.get(f"/runs/{parent['run']['id']}/children").text
        assert f"child-{child['id']}" in fragment


def test_a_failing_helper_is_a_failed_tool_call(agent_settings, fake_mistral):
    fake_mistral.add(
        Reply(tool_calls=[{"name": "ask_agent", "arguments": {"question": "Break"}}]),
        Reply(status=400),  # the helper's model call fails
        Reply(text="The helper failed, sorry."),
    )
    with api_client(agent_settings, "") as client:
        r = client.post("/api/runs", json={"prompt": "Try a helper"})
        parent = wait_for_run(client, r.json()["run_id"])
        assert parent["run"]["status"] == "succeeded"
        [call] = parent["tool_calls"]
        assert call["status"] == "error" and "helper agent run" in call["error"]
        assert "failed" in call["error"]
