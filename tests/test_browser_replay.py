"""A person opens a run, replays it with a new temperature, and reads the diff in Chromium."""

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import log_in, save_shot
from tests.conftest import MISTRAL_MODEL
from tests.fake_mistral import Reply
from tests.receivers import wait_until

pytestmark = pytest.mark.browser


def start_run(server, body):
    headers = {"X-API-Key": server.admin_key}
    r = httpx.post(server.url + "/api/runs", json=body, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]

    def succeeded():
        r = httpx.get(f"{server.url}/api/runs/{run_id}", headers=headers, timeout=10)
        return r.json()["run"] if r.json()["run"]["status"] == "succeeded" else None

    return wait_until(succeeded, 10, "the first run to succeed")


def test_replay_with_a_new_temperature_and_see_the_diff(
    browser,  # noqa: F811 - the fixture imported above
    live_server,
    fake_mistral,
    keys,
    tmp_path,
):
    fake_mistral.add(
        Reply(tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}]),
        Reply(text="The capital of France is **Paris**. It sits on the Seine.", usage=(120, 14)),
    )
    parent = start_run(
        live_server,
        {"prompt": "What is the capital of France?", "model": MISTRAL_MODEL, "temperature": 0.2},
    )
    # The replay streams slowly, so its diff page is first seen waiting.
    fake_mistral.add(
        Reply(
            text="Paris is the capital of France; it sits on the river Seine.",
            chunk_size=3,
            delay_s=0.05,
            usage=(90, 16),
        )
    )

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, live_server.url, keys["member"])
    page.goto(f"{live_server.url}/runs/{parent['id']}")
    page.click("#replay-link")
    page.wait_for_selector("form#replay-form")
    assert page.input_value("#r-temperature") == "0.2"
    page.fill("#r-temperature", "1.3")
    save_shot(page, tmp_path, "replay-form")
    page.click("#replay-form button[type=submit]")
    page.wait_for_url(lambda url: "/runs/" in url and parent["id"] not in url, timeout=10_000)
    replay_id = page.url.rstrip("/").rsplit("/", 1)[1]
    assert parent["id"] in page.inner_text("#lineage .lineage-parent")

    # Open the diff while the replay still runs: it waits, then fills in by itself.
    page.click("#diff-with-parent")
    page.wait_for_selector("#diff-body.diff-pending", timeout=5_000)
    save_shot(page, tmp_path, "replay-diff-pending")
    page.wait_for_selector("#diff-answer", timeout=20_000)
    assert "Replay diff" in page.inner_text("h1")
    deleted = page.locator("#diff-answer .diff-a del").all_inner_texts()
    inserted = page.locator("#diff-answer .diff-b ins").all_inner_texts()
    assert deleted and inserted
    temperature = page.locator(".diff-params tr[data-key=temperature]")
    assert "mem-changed" in temperature.get_attribute("class")
    assert "0.2" in temperature.inner_text() and "1.3" in temperature.inner_text()
    assert page.locator("#diff-calls [data-change=removed]").count() == 1
    # Output tokens: 6 (tool call round) + 14 before, 16 after.
    assert page.inner_text(".diff-metrics tr[data-key=output_tokens]").split()[-4:] == [
        "20",
        "16",
        "−4",
        "(-20.0%)",
    ]
    shot = save_shot(page, tmp_path, "replay-diff")
    assert shot.stat().st_size > 20_000

    # The original run now lists its replay, with a link to the diff.
    page.goto(f"{live_server.url}/runs/{parent['id']}")
    assert page.locator(f"#lineage table.replays a[href='/runs/{replay_id}']").count() == 1
    save_shot(page, tmp_path, "run-lineage")
    assert errors == []


def test_filter_runs_without_a_reload_and_open_a_session(
    browser,  # noqa: F811 - the fixture imported above
    live_server,
    fake_mistral,
    keys,
    tmp_path,
):
    fake_mistral.add(Reply(text="Paris."), Reply(text="Rome."), Reply(text="Bern."))
    for prompt, session in (
        ("Capital of France?", "geo"),
        ("Capital of Italy?", "geo"),
        ("Capital of Switzerland?", None),
    ):
        start_run(live_server, {"prompt": prompt, "model": MISTRAL_MODEL, "session": session})
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, live_server.url, keys["viewer"])
    page.goto(live_server.url + "/runs")
    assert page.locator("#runs-table tbody tr").count() == 3
    page.evaluate("window.__stillHere = true")
    page.fill("#f-q", "ital")
    expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    assert "Italy" in page.inner_text("#runs-table tbody")
    assert page.evaluate("window.__stillHere") is True  # swapped by htmx, not reloaded
    assert "q=ital" in page.url  # the filter is in the address, so it can be shared
    save_shot(page, tmp_path, "runs-filtered")
    page.fill("#f-q", "")
    page.fill("#f-session", "geo")
    page.press("#f-session", "Enter")
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    assert page.evaluate("window.__stillHere") is True

    page.click("nav[aria-label=Main] a[href='/sessions']")
    page.click("#sessions-table a:text('geo')")
    assert page.inner_text("#session-runs") == "2"
    assert page.locator("#runs-table tbody tr").count() == 2
    save_shot(page, tmp_path, "session")
    # A viewer sees runs but is not offered a replay.
    page.click("#runs-table tbody tr a")
    assert page.locator("#replay-link").count() == 0
