"""A person in Chromium starts a run from the form and watches the thread stream in."""

import pytest

from tests.browser import log_in, save_shot
from tests.conftest import MISTRAL_MODEL
from tests.fake_mistral import Reply

pytestmark = pytest.mark.browser


def test_start_a_run_and_watch_it_stream(browser, live_server, fake_mistral, keys, tmp_path):
    answer = "Paris is the capital of France. " * 4
    fake_mistral.add(
        Reply(
            text="Let me check.",
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}],
        ),
        Reply(text=answer, chunk_size=3, delay_s=0.04, usage=(120, 40)),
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, live_server.url, keys["member"])
    page.fill("textarea[name=prompt]", "What is the capital of France?")
    page.select_option("select[name=model]", MISTRAL_MODEL)
    page.click("#run-form button[type=submit]")
    page.wait_for_url("**/runs/*", timeout=10_000)

    # Tokens stream into the draft before the final message lands.
    page.wait_for_selector("#draft span", timeout=10_000)
    assert "Paris" in page.inner_text("#draft") or page.locator("#thread .msg-assistant").count()

    page.wait_for_selector("#run-status.status-succeeded", timeout=20_000)
    assistant = page.locator("#thread .msg-assistant")
    assert assistant.count() == 2
    assert "capital of France" in assistant.last.inner_text()
    card = page.locator("#thread .tool-call")
    assert card.count() == 1 and "error" in card.inner_text()
    assert "ELEVENLABS_API_KEY" in card.inner_text()
    assert page.inner_text("#draft") == ""
    assert page.inner_text("#run-totals [data-field=output_tokens]").strip() != "0"
    assert page.inner_text("#run-totals [data-field=cost]").startswith("$")
    shot = save_shot(page, tmp_path, "run-live")
    assert shot.stat().st_size > 10_000

    # The same page opened after the run shows the same thread.
    page.reload()
    assert page.locator("#thread .msg-assistant").count() == 2
    assert page.locator("#thread .tool-call").count() == 1
    page.goto(live_server.url + "/")
    save_shot(page, tmp_path, "dashboard")
    page.goto(live_server.url + "/runs")
    assert page.locator("table.runs tbody tr").count() == 1
    save_shot(page, tmp_path, "runs")
    assert dialogs == []


def test_run_lists_follow_new_runs_live(browser, live_server, fake_mistral, keys, tmp_path):
    """Dashboard and runs list, already open, show a run started elsewhere and its end."""
    import httpx
    from playwright.sync_api import expect

    fake_mistral.add(Reply(text="A slow answer. " * 6, chunk_size=4, delay_s=0.05))
    context = browser.new_context()  # one browser session, two tabs
    dashboard = context.new_page()
    errors = []
    dashboard.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(dashboard, live_server.url, keys["viewer"])
    runs = context.new_page()
    runs.goto(live_server.url + "/runs")
    assert dashboard.locator("#runs-empty").is_visible()
    assert dashboard.inner_text("#kpi-runs").strip() == "0"
    dashboard.wait_for_timeout(300)  # let both pages open their streams

    r = httpx.post(
        live_server.url + "/api/runs",
        headers={"X-API-Key": keys["member"]},
        json={"prompt": "started from a script", "model": MISTRAL_MODEL, "tools": []},
        timeout=10,
    )
    run_id = r.json()["run_id"]
    for page in (dashboard, runs):
        row = page.locator(f"#run-row-{run_id}")
        row.wait_for(timeout=10_000)
        assert "started from a script" in row.inner_text()
        page.wait_for_selector(f"#run-row-{run_id} .status-succeeded", timeout=20_000)
        assert page.locator(f"#run-row-{run_id}").count() == 1  # never duplicated
    assert not dashboard.locator("#runs-empty").is_visible()
    expect(dashboard.locator("#kpi-runs")).to_have_text("1")
    save_shot(dashboard, tmp_path, "dashboard-live")
    context.close()  # ends the list streams, which otherwise stay open
    assert errors == []
