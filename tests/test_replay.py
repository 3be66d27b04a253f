"""Replay with overrides through the API, the pages and the CLI; diffs stored; lineage shown."""

import pytest
from bs4 import BeautifulSoup

from app.core.settings import Settings
from app.replay.diff_store import create_diff
from tests.conftest import LOCAL_MODEL, MISTRAL_MODEL, agent_config, api_client, csrf, wait_for_run
from tests.fake_mistral import Reply
from tests.receivers import wait_until
from tests.test_cli import run_cli

pytestmark = pytest.mark.both_backends


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


def wait_for_diff(client, diff_id, timeout=30.0):
    def ready():
        diff = client.get(f"/api/diffs/{diff_id}").json()
        return diff if diff["status"] == "ready" else None

    return wait_until(ready, timeout, f"diff {diff_id} to be ready")


def start(client, key=None, **body):
    headers = {"X-API-Key": key} if key else {}
    r = client.post("/api/runs", json={"model": MISTRAL_MODEL, **body}, headers=headers)
    assert r.status_code == 201, r.text
    return wait_for_run(client, r.json()["run_id"])["run"]


def test_replay_with_a_new_temperature_records_a_diff(client, fake_mistral):
    fake_mistral.add(
        Reply(tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}]),
        Reply(text="The capital of France is Paris.", usage=(40, 8)),
    )
    parent = start(
        client,
        prompt="Capital of France?",
        temperature=0.1,
        session="exp-1",
        system_prompt="Be brief.",
    )
    fake_mistral.add(Reply(text="Paris is the capital of France!", usage=(30, 12)))
    r = client.post(f"/api/runs/{parent['id']}/replay", json={"temperature": 0.9})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"run_id", "diff_id", "status", "parent_run_id"}
    assert body["status"] == "queued" and body["parent_run_id"] == parent["id"]
    replay = wait_for_run(client, body["run_id"])["run"]
    assert replay["parent_run_id"] == parent["id"] and replay["parent_kind"] == "replay"
    assert replay["prompt"] == parent["prompt"] and replay["session_id"] == "exp-1"
    assert replay["params"]["temperature"] == 0.9
    request = fake_mistral.requests[-1]
    assert request["temperature"] == 0.9
    assert request["messages"][0] == {"role": "system", "content": "Be brief."}

    diff = wait_for_diff(client, body["diff_id"])
    assert diff["run_a"] == parent["id"] and diff["run_b"] == replay["id"]
    assert diff["kind"] == "replay" and diff["overrides"] == {"temperature": 0.9}
    data = diff["data"]
    assert data["identical"] is False and diff["identical"] is False
    params = {p["key"]: p for p in data["params"]}
    assert params["temperature"] == {"key": "temperature", "a": 0.1, "b": 0.9, "changed": True}
    assert [(c["change"], c["name"]) for c in data["tool_calls"]] == [
        ("removed", "elevenlabs_speak")
    ]
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["output_tokens"]["a"] >= 8 and metrics["output_tokens"]["b"] == 12
    assert metrics["latency_ms"]["delta"] is not None
    removed = "".join(s.get("a", "") for s in data["answer"]["ops"] if s["op"] != "equal")
    assert "The " in removed

    page = soup(client.get(f"/diffs/{body['diff_id']}"))
    assert page.select_one("#diff-answer .diff-a del") is not None
    assert page.select_one("#diff-answer .diff-b ins") is not None
    assert page.select_one(".diff-params tr.mem-changed[data-key=temperature]") is not None
    assert page.select_one("#diff-calls [data-change=removed]") is not None


def test_identical_replay_and_replay_of_a_replay(client, fake_mistral):
    fake_mistral.add(Reply(text="Same answer."), Reply(text="Same answer."), Reply(text="Other."))
    parent = start(client, prompt="Say it", tools=[])
    first = client.post(f"/api/runs/{parent['id']}/replay").json()  # no body: replay as is
    wait_for_run(client, first["run_id"])
    diff = wait_for_diff(client, first["diff_id"])
    assert diff["identical"] is True and diff["data"]["answer"]["similarity"] == 1.0
    assert soup(client.get(f"/diffs/{first['diff_id']}")).select_one("#diff-identical") is not None

    second = client.post(f"/api/runs/{first['run_id']}/replay", json={"max_tokens": 20}).json()
    run = wait_for_run(client, second["run_id"])["run"]
    assert run["parent_run_id"] == first["run_id"] and run["params"]["tools"] == []
    assert wait_for_diff(client, second["diff_id"])["data"]["identical"] is False

    # Lineage: the middle run shows its parent, the diff with it, and its own replay.
    page = soup(client.get(f"/runs/{first['run_id']}"))
    lineage = page.select_one("#lineage")
    assert parent["id"] in lineage.select_one(".lineage-parent").text
    assert lineage.select_one("#diff-with-parent")["href"] == f"/diffs/{first['diff_id']}"
    assert [a.text for a in lineage.select("table.replays code")] == [second["run_id"][:8]]
    assert lineage.select_one(f"table.replays a[href='/diffs/{second['diff_id']}']")


def test_overrides_of_tools_system_prompt_and_model(client, fake_mistral):
    fake_mistral.add(Reply(text="one"), Reply(text="two"))
    parent = start(client, prompt="Hi", system_prompt="Old system.", tools=["wandb_log"])
    r = client.post(
        f"/api/runs/{parent['id']}/replay",
        json={"tools": [], "system_prompt": "", "model": "mistral-large-latest"},
    )
    assert r.status_code == 201, r.text
    run = wait_for_run(client, r.json()["run_id"])["run"]
    assert run["model"] == "mistral-large-latest" and run["params"]["system_prompt"] is None
    request = fake_mistral.requests[-1]
    assert "tools" not in request or not request["tools"]
    assert request["messages"][0]["role"] == "user"
    assert fake_mistral.requests[0]["messages"][0]["content"] == "Old system."


def test_bad_replays_are_4xx_with_a_message(client, fake_mistral, keys, settings):
    parent = start(client, prompt="Hi")
    url = f"/api/runs/{parent['id']}/replay"
    cases = [
        ({"temperature": 5}, 400, "'Expected `float` <= 2.0', 'key': 'temperature'"),
        ({"tools": ["nope"]}, 400, "unknown tool(s): nope"),
        ({"max_tokens": 0}, 400, "'Expected `int` >= 1', 'key': 'max_tokens'"),
        ({"temperature": "hot"}, 400, ""),
    ]
    for body, status, message in cases:
        r = client.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["detail"] + str(r.json().get("extra", ""))
    r = client.post("/api/runs/nope/replay", json={})
    assert r.status_code == 404 and "not found" in r.json()["detail"]
    # A run still going cannot be replayed yet.
    store = client.app.state.store
    store.write_sync(
        lambda db: db.execute("update runs set status = 'running' where id = ?", [parent["id"]])
    )
    r = client.post(url, json={})
    assert r.status_code == 400 and "still running" in r.json()["detail"]
    with api_client(settings, keys["viewer"]) as viewer:
        assert viewer.post(url, json={}).status_code == 403


def test_diff_is_pending_while_the_replay_runs(client, fake_mistral):
    fake_mistral.add(Reply(text="fast"), Reply(text="slow answer " * 5, chunk_size=4, delay_s=0.05))
    parent = start(client, prompt="Go", tools=[])
    body = client.post(f"/api/runs/{parent['id']}/replay", json={}).json()
    pending = client.get(f"/api/diffs/{body['diff_id']}").json()
    assert pending["status"] == "pending" and pending["data"] is None
    page = soup(client.get(f"/diffs/{body['diff_id']}"))
    waiting = page.select_one("#diff-body.diff-pending")
    assert waiting["sse-connect"].startswith(f"/runs/{body['run_id']}/events")
    assert (
        waiting.select_one("[hx-trigger*='sse:run_finished']")["hx-get"]
        == f"/diffs/{body['diff_id']}/body"
    )
    wait_for_run(client, body["run_id"])
    assert wait_for_diff(client, body["diff_id"])["data"]["answer"]["words_added"] == 10
    fragment = soup(client.get(f"/diffs/{body['diff_id']}/body"))
    assert fragment.select_one("#diff-body.diff-body #diff-answer") is not None


def test_a_pending_diff_is_filled_when_viewed(client, fake_mistral):
    """A stop between the replay's end and its diff (or an old pending row) heals on view."""
    fake_mistral.add(Reply(text="a"), Reply(text="b"))
    a = start(client, prompt="x")
    b = start(client, prompt="x")
    store = client.app.state.store
    row = store.write_sync(create_diff, a["id"], b["id"], "replay", {})
    assert row["status"] == "pending"
    diff = client.get(f"/api/diffs/{row['id']}").json()
    assert diff["status"] == "ready" and diff["computed_at"]


def test_compare_any_two_runs(page_client, fake_mistral, keys):
    client = page_client
    fake_mistral.add(Reply(text="Rome is in Italy."), Reply(text="Bern is in Switzerland."))
    a = start(client, keys["member"], prompt="Where is Rome?")
    b = start(client, keys["member"], prompt="Where is Bern?")
    page = client.get(f"/diffs/new?a={a['id']}&b={b['id']}")
    assert page.status_code == 200
    html = soup(page)
    assert html.select_one("#diff-answer .diff-a del").text.startswith("Rome")
    assert "Prompts differ" in html.select_one(".prompt-card").text
    save = html.select_one("form.save-diff")
    r = client.post(
        "/diffs",
        data={"a": a["id"], "b": b["id"], "_csrf_token": csrf(client)},
        follow_redirects=False,
    )
    assert save is not None and r.status_code == 303
    diff_id = r.headers["location"].rsplit("/", 1)[1]
    assert client.get(f"/api/diffs/{diff_id}").json()["kind"] == "compare"
    # The picker, and clear errors for bad input.
    assert soup(client.get("/diffs/new")).select_one("form#compare-form input[name=a]")
    r = client.get(f"/diffs/new?a={a['id']}&b=missing")
    assert r.status_code == 422 and "not found" in soup(r).select_one(".form-error").text
    assert client.get("/diffs/nope").status_code == 404
    assert client.get("/api/diffs/nope").status_code == 404


def test_compare_through_the_api(client, fake_mistral):
    fake_mistral.add(Reply(text="one"), Reply(text="two"))
    a, b = start(client, prompt="1"), start(client, prompt="2")
    r = client.post("/api/diffs", json={"a": a["id"], "b": b["id"]})
    assert r.status_code == 201 and r.json()["status"] == "ready"
    assert client.post("/api/diffs", json={"a": a["id"], "b": "zz"}).status_code == 404
    assert client.post("/api/diffs", json={"a": a["id"]}).status_code == 400


def test_replay_page_form(page_client, fake_mistral, keys):
    client = page_client
    fake_mistral.add(Reply(text="first"), Reply(text="second"))
    parent = start(
        client,
        keys["member"],
        prompt="Tell me",
        temperature=0.3,
        tools=["wandb_log"],
        system_prompt="Sys.",
    )
    form = soup(client.get(f"/runs/{parent['id']}/replay")).select_one("form#replay-form")
    assert form.select_one("#r-temperature")["value"] == "0.3"
    assert form.select_one("#r-system").text == "Sys."
    assert [i["value"] for i in form.select("input[name=tools][checked]")] == ["wandb_log"]
    assert form.select_one("#r-model option[selected]")["value"] == MISTRAL_MODEL
    data = {
        "model": MISTRAL_MODEL,
        "temperature": "1.1",
        "max_tokens": "",
        "max_rounds": "",
        "system_prompt": "Sys.",
        "session": "",
        "tools_present": "1",
        "_csrf_token": csrf(client),
    }
    r = client.post(f"/runs/{parent['id']}/replay", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    run = wait_for_run(client, r.headers["location"].rsplit("/", 1)[1])["run"]
    assert run["params"]["temperature"] == 1.1 and run["params"]["tools"] == []
    assert run["params"]["max_tokens"] == parent["params"]["max_tokens"]
    # Errors re-render the form with the message, as a 422 (htmx swaps it in place).
    r = client.post(
        f"/runs/{parent['id']}/replay",
        data={**data, "temperature": "9"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422
    error = soup(r).select_one("#replay-form .form-error").text
    assert "temperature: expected float <= 2.0" in error
    # Without the CSRF token the form is refused.
    r = client.post(f"/runs/{parent['id']}/replay", data={"temperature": "1"})
    assert r.status_code == 403


def test_cli_replay_prints_the_diff(tmp_path, fake_mistral):
    env = {
        "MISTRAL_API_KEY": "k",
        "MISTRAL_SERVER_URL": fake_mistral.url,
        "AGENTOP_DATA_DIR": str(tmp_path),
    }
    fake_mistral.add(Reply(text="Paris."), Reply(text="Paris, France."))
    r = run_cli("run", "Capital?", "--model", MISTRAL_MODEL, env_extra=env)
    assert r.returncode == 0, r.stderr
    run_id = r.stderr.strip().split("run id ")[-1].strip()
    r = run_cli(
        "replay", run_id, "--temperature", "1.3", "--tools", "", "--system", "Short.", env_extra=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Paris, France."
    assert "settings changed  temperature, system_prompt, tools" in r.stderr
    assert "diff " in r.stderr and "/diffs/" in r.stderr
    assert fake_mistral.requests[-1]["temperature"] == 1.3
    r = run_cli("replay", "nope", env_extra=env)
    assert r.returncode == 2 and "not found" in r.stderr


@pytest.mark.local_model
def test_local_model_replay_with_a_new_temperature(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", agent_config=agent_config(None), auth=False)
    with api_client(settings, "") as client:
        r = client.post(
            "/api/runs",
            json={
                "prompt": "Name a fruit.",
                "model": LOCAL_MODEL,
                "max_tokens": 8,
                "tools": [],
                "temperature": 0.0,
            },
        )
        assert r.status_code == 201, r.text
        parent = wait_for_run(client, r.json()["run_id"], timeout=120)["run"]
        assert parent["status"] == "succeeded", parent["error"]
        body = client.post(f"/api/runs/{parent['id']}/replay", json={"temperature": 1.5}).json()
        replay = wait_for_run(client, body["run_id"], timeout=120)["run"]
        assert replay["status"] == "succeeded" and replay["provider"] == "local"
        diff = wait_for_diff(client, body["diff_id"])
        params = {p["key"]: p for p in diff["data"]["params"]}
        assert params["temperature"]["a"] == 0.0 and params["temperature"]["b"] == 1.5
        assert params["temperature"]["changed"] and not params["model"]["changed"]
        assert diff["data"]["metrics"][1]["b"] <= 8  # output tokens within max_tokens
