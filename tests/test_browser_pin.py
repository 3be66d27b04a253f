"""In Chromium: pin a run from its page (htmx swaps the button), and it stays pinned on reload."""

from __future__ import annotations

import time

import httpx
import pytest

from app.store import Store
from app.store.runs import create_run
from tests.browser import log_in, save_shot

pytestmark = pytest.mark.browser


@pytest.fixture
def a_run(settings):
    store = Store(settings.db_path)
    now = time.time()
    store.write_sync(
        create_run,
        {
            "id": "pinme",
            "status": "succeeded",
            "prompt": "What is the capital of Peru?",
            "response": "Lima.",
            "model": "mistral-small-latest",
            "provider": "mistral",
            "started_at": now - 60,
            "ended_at": now - 58,
        },
    )
    store.close()


def test_pin_a_run_from_its_page(a_run, settings, browser, live_server, tmp_path):
    settings.retention_days = 30
    page = browser.new_page()
    log_in(page, live_server.url, live_server.admin_key)
    page.goto(f"{live_server.url}/runs/pinme")
    pin = page.locator("#run-pin")
    assert pin.locator("button").inner_text() == "Pin"
    assert "Deleted 30 days after it ends" in pin.inner_text()
    pin.locator("button").click()
    page.wait_for_selector("#run-pin .status-pinned")
    assert page.url.endswith("/runs/pinme")  # swapped in place, no navigation
    assert pin.locator("button").inner_text() == "Unpin"
    assert "Kept whatever its age." in pin.inner_text()
    save_shot(page, tmp_path, "run_pinned")
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": live_server.admin_key}) as c:
        assert c.get("/api/runs/pinme").json()["run"]["pinned_at"] is not None
    page.reload()
    assert page.locator("#run-pin .status-pinned").inner_text() == "Pinned"
    page.locator("#run-pin button").click()
    page.wait_for_selector("#run-pin .status-pinned", state="detached")
    assert page.locator("#run-pin button").inner_text() == "Pin"
