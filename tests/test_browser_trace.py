"""A person in Chromium opens the trace of an ingested run and of a native run and expands a span.

Screenshots go to /tmp/shots13/ (outside the repository) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import log_in
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply
from tests.test_trace_view import ODD_SPANS, ingest_nested_trace, odd_run

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp/shots13")


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_span(page, name: str) -> str:  # type: ignore[no-untyped-def]
    """Click the span called ``name`` in the trace card; the detail panel's text."""
    page.locator("#trace a.span-name", has_text=name).first.click()
    # Wait for this span's detail: the panel may still show the span opened before.
    expect(page.locator("#span-detail article.span-detail h3")).to_contain_text(
        name, timeout=10_000
    )
    return page.inner_text("#span-detail")


def test_the_trace_of_an_ingested_run(browser, live_server, keys):
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["member"]}) as api:
        run_id = ingest_nested_trace(api)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, live_server.url, keys["viewer"])
    page.goto(f"{live_server.url}/runs/{run_id}")
    page.wait_for_selector("#trace tr.span-row", timeout=10_000)  # fetched by htmx
    assert page.locator("#trace tr.span-row").count() == 5
    failed = page.locator("#trace tr.span-failed")
    assert failed.count() == 1 and "search backend is down" in failed.inner_text()

    detail = open_span(page, "chat gpt-4o-mini")
    assert "gen_ai.request.model" in detail and "gpt-4o-mini" in detail
    assert "trace-test-svc" in detail and "app.retry" in detail
    assert page.locator("#span-detail table[aria-label=Attributes]").is_visible()
    page.locator("#trace").scroll_into_view_if_needed()
    shot(page, "ingested-trace")

    detail = open_span(page, "execute_tool search")
    assert "✕ error: search backend is down" in detail
    shot(page, "ingested-failed-span")
    assert errors == []


def test_the_trace_of_a_native_run(browser, live_server, fake_mistral, keys):
    fake_mistral.add(
        Reply(
            text="Let me say it.",
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}],
            usage=(30, 8),
        ),
        Reply(text="Paris is the capital of France.", usage=(45, 7)),
    )
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["member"]}) as api:
        r = api.post("/api/runs", json={"prompt": "Capital of France?", "model": MISTRAL_MODEL})
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        wait_for_run(api, run_id)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, live_server.url, keys["viewer"])
    page.goto(f"{live_server.url}/runs/{run_id}")
    page.wait_for_selector("#trace tr.span-row", timeout=10_000)
    kinds = page.locator("#trace tr.span-row .kind").all_inner_texts()
    assert [k.lower() for k in kinds][0] == "agent" and len(kinds) == 4

    page.locator("#trace tr.row-llm a.span-name").first.click()
    page.wait_for_selector("#span-detail article.span-detail", timeout=10_000)
    assert page.locator("#span-detail table[aria-label=Attributes] tr").count() >= 1
    page.locator("#trace").scroll_into_view_if_needed()
    shot(page, "native-trace")

    # Without htmx the same link opens the span on a page of its own.
    href = page.locator("#trace tr.row-tool a.span-name").first.get_attribute("href")
    page.goto(live_server.url + href)
    page.wait_for_selector("section#span-detail article.span-detail")
    assert "ELEVENLABS_API_KEY" in page.inner_text("#span-detail")
    shot(page, "native-span-page")
    assert errors == []


def test_odd_and_deep_spans_render_tidily_and_run_no_script(browser, live_server, app, keys):
    deep = [
        {
            "span_id": f"d{i}",
            "parent_span_id": f"d{i - 1}" if i else "root",
            "kind": "tool",
            "name": f"nested step {i} " + "with a long name " * 3,
            "start_at": 100.0 + i * 0.2,
            "end_at": 100.3 + i * 0.2,
            "status": "ok",
        }
        for i in range(25)
    ]

    odd_run(app.state.store, "odd-trace", [*ODD_SPANS, *deep])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, live_server.url, keys["viewer"])
    page.goto(f"{live_server.url}/runs/odd-trace")
    page.wait_for_selector("#trace tr.span-row", timeout=10_000)
    assert page.locator("#trace tr.span-row").count() == len(ODD_SPANS) + 25
    page.locator("#trace a.span-name", has_text="<script>alert(1)</script>").click()
    page.wait_for_selector("#span-detail article.span-detail", timeout=10_000)
    big = page.locator("#span-detail details.tv-fold").first
    assert not big.locator("pre").is_visible()
    big.locator("summary").click()
    assert big.locator("pre").is_visible()
    page.locator("#trace").scroll_into_view_if_needed()
    shot(page, "odd-trace")
    assert dialogs == []


def test_the_trace_grows_while_the_run_streams(browser, live_server, fake_mistral, keys):
    """Opened while the run is going, the trace card gains each span as it ends."""
    fake_mistral.add(
        Reply(text="Let me check.", tool_calls=[{"name": "elevenlabs_speak", "arguments": {}}]),
        Reply(text="Paris is the capital of France.", delay_s=1.5),
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    log_in(page, live_server.url, keys["member"])
    page.goto(f"{live_server.url}/settings/prices")  # leave the dashboard's live list
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["member"]}) as api:
        r = api.post("/api/runs", json={"prompt": "Capital of France?", "model": MISTRAL_MODEL})
        run_id = r.json()["run_id"]
        page.goto(f"{live_server.url}/runs/{run_id}")
        # The second model call is still being answered: its span is not there yet.
        assert page.locator("#run-status.status-running").count() == 1
        assert page.locator("#trace tr.row-llm").count() < 2
        page.wait_for_selector("#run-status.status-succeeded", timeout=20_000)
        wait_for_run(api, run_id)
    expect(page.locator("#trace tr.row-llm")).to_have_count(2, timeout=10_000)
    assert page.locator("#trace tr.row-tool").count() == 1
    assert "running" not in page.inner_text("#trace tr.span-row >> nth=0")
    assert errors == []
