"""Runs across the server's life: shutdown mid-run, the HTML stream, body limits."""

import time

import pytest

from tests.conftest import MISTRAL_MODEL, api_client, wait_for_run
from tests.fake_mistral import Reply
from tests.receivers import wait_until

pytestmark = pytest.mark.both_backends


def start_streaming(client) -> str:  # type: ignore[no-untyped-def]
    """Start a run of the fake model's next reply; its id once it is streaming."""
    run_id = client.post("/api/runs", json={"prompt": "long", "model": MISTRAL_MODEL}).json()[
        "run_id"
    ]
    wait_until(
        lambda: client.get(f"/api/runs/{run_id}").json()["run"]["status"] == "running",
        10,
        f"run {run_id} to stream",
    )
    return str(run_id)


def test_shutdown_mid_run_marks_it_interrupted(settings, keys, fake_mistral):
    fake_mistral.add(Reply(text="x" * 400, chunk_size=2, delay_s=0.02))
    with api_client(settings, keys["admin"]) as client:
        run_id = start_streaming(client)  # then stop the server under it
    with api_client(settings, keys["admin"]) as client:
        detail = client.get(f"/api/runs/{run_id}").json()
        assert detail["run"]["status"] == "interrupted"
        assert detail["run"]["ended_at"] is not None
        # The stored log ends with the interruption, so streams of it end too.
        events = client.get(f"/api/runs/{run_id}/events").text.replace("\r\n", "\n")
        last_event = events.rstrip().split("\n\n")[-1]
        assert "event: run_interrupted" in last_event


def test_a_draining_stop_lets_the_run_finish(settings, keys, fake_mistral):
    """AGENTOP_DRAIN_S: a server stopped mid-run (a replica in a rolling update) lets the
    run finish before it exits, instead of interrupting it."""
    fake_mistral.add(Reply(text="x" * 300, chunk_size=2, delay_s=0.02))  # ~3 s of streaming
    settings.drain_s = 60
    with api_client(settings, keys["admin"]) as client:
        run_id = start_streaming(client)
        stopping = time.monotonic()
    waited = time.monotonic() - stopping
    settings.drain_s = 0
    with api_client(settings, keys["admin"]) as client:
        detail = client.get(f"/api/runs/{run_id}").json()
        assert detail["run"]["status"] == "succeeded", detail["run"]
        assert detail["run"]["response"] == "x" * 300
        events = client.get(f"/api/runs/{run_id}/events").text.replace("\r\n", "\n")
        assert "event: run_finished" in events.rstrip().split("\n\n")[-1]
    assert 0.5 < waited < 60  # it waited for the run, not for the whole drain time


def test_a_stopping_server_takes_no_new_run(client):
    client.app.state.runner.stopping = True  # as drain() sets it
    r = client.post("/api/runs", json={"prompt": "hi", "model": MISTRAL_MODEL})
    assert r.status_code == 503
    assert "stopping" in r.json()["detail"]


def test_html_stream_renders_the_partials_and_ends(client, fake_mistral):
    fake_mistral.add(Reply(text="Hello <img src=x onerror=alert(1)> *friend*", chunk_size=4))
    run_id = client.post("/api/runs", json={"prompt": "hi", "model": MISTRAL_MODEL}).json()[
        "run_id"
    ]
    wait_for_run(client, run_id)
    body = client.get(f"/runs/{run_id}/events").text.replace("\r\n", "\n")
    assert "event: message" in body and '<li class="msg msg-user">' in body
    assert "event: token" in body and "<span>Hell</span>" in body
    assert "<span>o &lt;i</span>" in body  # streamed text is escaped
    assert 'hx-swap-oob="innerHTML:#draft"' in body  # the final message clears the draft
    assert 'id="run-status" class="status status-succeeded" hx-swap-oob="true"' in body
    assert body.rstrip().endswith("event: stream_end\ndata: end")
    assert "onerror" not in body.replace("onerror=alert(1)&gt;", "")  # sanitized message
    assert "<em>friend</em>" in body


def test_oversized_body_is_413(client):
    r = client.post("/api/runs", json={"prompt": "x" * 2_000_000})
    assert r.status_code == 413


def test_prompt_too_long_for_the_model_limit_is_400(client):
    r = client.post("/api/runs", json={"prompt": "x" * 200_000, "model": MISTRAL_MODEL})
    assert r.status_code == 400 and "length <= 100000" in r.text and '"key":"prompt"' in r.text


def test_api_validation_messages(client):
    cases = [
        ({"prompt": "x", "temperature": 5}, '"Expected `float` <= 2.0","key":"temperature"'),
        ({"prompt": "x", "temperature": True}, "temperature"),
        ({"prompt": "x", "max_tokens": 0}, '"Expected `int` >= 1","key":"max_tokens"'),
        ({"prompt": "x", "tools": ["nope"]}, "unknown tool"),
        ({"prompt": "x", "model": "no-such-model", "session": "s" * 300}, "session"),
        ({}, "prompt"),
    ]
    for body, message in cases:
        r = client.post("/api/runs", json=body)
        assert r.status_code == 400, (body, r.text)
        assert message in r.text, (body, r.text)
    assert client.get("/api/runs?limit=0").status_code == 400
    assert client.get("/api/runs?limit=abc").status_code == 400
    assert client.get("/api/runs/nope/events").status_code == 404
