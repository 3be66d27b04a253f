"""Pages as a person gets them: forms, the run thread, errors, sanitizing, restarts."""

import time

import pytest
from bs4 import BeautifulSoup

from app.store import Store
from app.store.runs import create_run
from tests.conftest import MISTRAL_MODEL, api_client, csrf, wait_for_run
from tests.fake_mistral import Reply

pytestmark = pytest.mark.both_backends


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


def test_dashboard_has_form_and_kpis(client):
    page = soup(client.get("/"))
    assert page.select_one("form#run-form textarea[name=prompt]") is not None
    options = [o["value"] for o in page.select("select[name=model] option")]
    assert "smollm2-135m" in options and MISTRAL_MODEL in options
    assert page.select_one("#kpi-runs").text.strip() == "0"
    assert {i["value"] for i in page.select("input[name=tools]")} == {
        "wandb_log",
        "hf_list_models",
        "elevenlabs_speak",
    }


def test_form_starts_a_run_and_the_page_shows_the_thread(page_client, fake_mistral):
    client = page_client
    fake_mistral.add(Reply(text="The answer is **42**."))
    r = client.post(
        "/runs",
        data={
            "prompt": "What is the answer?",
            "model": MISTRAL_MODEL,
            "temperature": "0.2",
            "max_tokens": "50",
            "tools_present": "1",
            "_csrf_token": csrf(client),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    run_id = r.headers["location"].rsplit("/", 1)[1]
    detail = wait_for_run(client, run_id)
    assert detail["run"]["params"]["tools"] == []  # every box unchecked
    assert detail["run"]["params"]["temperature"] == 0.2
    page = soup(client.get(f"/runs/{run_id}"))
    assert page.select_one("#run-status").text.strip() == "succeeded"
    msgs = page.select("#thread li.msg")
    assert [m.select_one(".role").text for m in msgs] == ["user", "assistant"]
    assert msgs[1].select_one(".content strong").text == "42"
    assert page.select_one("[sse-connect]") is None  # finished runs do not stream
    assert "Cost" in page.select_one("#run-totals").text


def test_htmx_form_redirects_with_header(page_client):
    r = page_client.post(
        "/runs",
        data={"prompt": "hi", "model": MISTRAL_MODEL},
        headers={"HX-Request": "true", "x-csrftoken": csrf(page_client)},
    )
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/runs/")


def test_bad_form_input_is_a_422_with_the_message(page_client):
    client = page_client
    token = {"_csrf_token": csrf(client)}
    r = client.post(
        "/runs",
        data={"prompt": "  ", "model": MISTRAL_MODEL, **token},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422
    assert "missing required field prompt" in soup(r).select_one(".form-error").text
    r = client.post("/runs", data={"prompt": "x", "temperature": "hot", **token})
    assert r.status_code == 422 and "temperature: expected float" in r.text
    r = client.post("/runs", data={"prompt": "x", "tools_present": "1", "tools": "rm_rf", **token})
    assert r.status_code == 422 and "unknown tool" in r.text


def test_unknown_run_page_is_a_404_page(client):
    r = client.get("/runs/nope", headers={"Accept": "text/html"})
    assert r.status_code == 404 and "not found" in r.text and "<html" in r.text


def test_untrusted_text_is_sanitized(client, fake_mistral):
    evil = (
        "<script>alert('x')</script> <img src=x onerror=alert(1)> "
        "[click](javascript:alert(2)) ![i](javascript:alert(3)) <a href='data:text/html,x'>d</a>"
    )
    fake_mistral.add(Reply(text=evil))
    run_id = client.post("/api/runs", json={"prompt": evil, "model": MISTRAL_MODEL}).json()[
        "run_id"
    ]
    wait_for_run(client, run_id)
    html = client.get(f"/runs/{run_id}").text
    page = BeautifulSoup(html, "html.parser")
    assert not page.select("#thread script")
    assert not page.select("#thread [onerror]")
    hrefs = [a.get("href", "") for a in page.select("#thread a")]
    assert not any(h.startswith(("javascript:", "data:")) for h in hrefs)
    assert "<script>alert" not in html


def test_runs_left_running_are_interrupted_on_start(settings, keys):
    store = Store(settings.db_path, url=settings.database_url)
    store.write_sync(
        create_run,
        {"id": "crashed1", "status": "running", "prompt": "p", "model": "m", "provider": "local"},
    )
    store.close()
    with api_client(settings, keys["admin"]) as client:
        detail = client.get("/api/runs/crashed1").json()
        assert detail["run"]["status"] == "interrupted"
        assert "server stopped" in detail["run"]["error"]
        events = client.get("/api/runs/crashed1/events").text
        assert "event: run_interrupted" in events


def test_runs_page_paginates_newest_first(settings, keys):
    store = Store(settings.db_path, url=settings.database_url)
    now = time.time()
    for i in range(60):
        store.write_sync(
            create_run,
            {
                "id": f"r{i:03d}",
                "status": "succeeded",
                "prompt": f"prompt {i}",
                "started_at": now + i,
            },
        )
    store.close()
    with api_client(settings, keys["admin"]) as client:
        first = soup(client.get("/runs"))
        rows = first.select("table.runs tbody tr")
        assert len(rows) == 50 and rows[0]["id"] == "run-row-r059"
        second = client.get("/runs?page=2", headers={"HX-Request": "true"})
        rows2 = soup(second).select("table.runs tbody tr")
        assert len(rows2) == 10 and rows2[-1]["id"] == "run-row-r000"
        assert "<html" not in second.text  # htmx gets the fragment only
        assert client.get("/runs?page=0").status_code == 400
