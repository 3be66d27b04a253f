"""End-to-end through the JSON API with the real Mistral SDK and the fake server."""

import pytest

from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply

pytestmark = pytest.mark.both_backends


def test_health(client):
    assert client.get("/api/health").json() == {"status": "ok"}


def test_ready_without_a_key(client):
    r = client.get("/api/ready", headers={"X-API-Key": ""})
    assert (r.status_code, r.json()) == (200, {"status": "ready"})


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_not_ready_while_postgresql_is_gone_then_ready_again(client, database_url):
    """Readiness follows the database: its connections cut, 503 once, then 200 (reconnected)."""
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            [name],
        )
    answers = [client.get("/api/ready").status_code for _ in range(6)]
    # Each reader thread finds its connection gone once (503), then connects anew.
    assert 503 in answers and answers[-1] == 200, answers
    r = client.get("/api/ready")
    assert r.status_code == 200


def test_run_with_tool_round_trip(client, fake_mistral):
    fake_mistral.add(
        Reply(tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "hi"}}]),
        Reply(text="I could not speak, **sorry**.", usage=(50, 7)),
    )
    r = client.post("/api/runs", json={"prompt": "say hi aloud", "model": MISTRAL_MODEL})
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    detail = wait_for_run(client, run_id)
    run = detail["run"]
    assert run["status"] == "succeeded"
    assert run["response"] == "I could not speak, **sorry**."
    assert run["tool_calls"] == 1 and run["tool_errors"] == 1
    [call] = detail["tool_calls"]
    assert call["name"] == "elevenlabs_speak" and call["status"] == "error"
    assert "ELEVENLABS_API_KEY" in call["error"]
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert run["output_tokens"] >= 7 and run["cost_status"] == "priced" and run["cost_usd"] > 0
