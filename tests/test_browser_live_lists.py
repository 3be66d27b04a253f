"""In Chromium, a run created while a live list opens shows up, and updates live, without errors.

The dashboard reads its rows, then its stream subscribes. A run created in
between used to be missing from the table, and its first update was swapped
out of band into a row the page did not have (``htmx:oobErrorNoTarget`` in
the console). Here the run is created exactly then: while the browser's
request for the stream is held back.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from app.store.live import LiveEvent
from app.store.runs import create_run, get_run
from tests.browser import log_in, save_shot
from tests.test_odd_data import _publisher

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("path", ["/", "/runs"], ids=["dashboard", "runs page"])
def test_a_run_created_as_the_list_opens_shows_and_updates(
    browser: Any, live_server: Any, app: Any, keys: dict[str, str], tmp_path: Any, path: str
) -> None:
    store = app.state.store
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, live_server.url, keys["viewer"])
    page.goto("about:blank")  # the login's dashboard opens no stream after the route is set
    run_id = f"between-{time.time_ns()}"
    opened: list[str] = []

    def create_then_subscribe(route: Any) -> None:
        # After the page read its rows, before the stream subscribes.
        if not opened:
            row = {"id": run_id, "status": "running", "prompt": "made in between"}
            store.write_sync(create_run, row | {"started_at": time.time()})
        opened.append(route.request.url)
        route.continue_()

    page.route(re.compile(r"/runs/live(\?|$)"), create_then_subscribe)
    page.goto(live_server.url + path)
    row = page.locator(f"#run-row-{run_id}")
    expect(row).to_contain_text("made in between")
    expect(row.locator(".status")).to_have_text("running")

    finished = store.write_sync(get_run, run_id) | {"status": "succeeded"}
    _publisher(live_server, app)(LiveEvent(run_id, 2, "run_finished", {}, finished))
    expect(row.locator(".status")).to_have_text("succeeded")
    assert page.locator(f"#run-row-{run_id}").count() == 1
    save_shot(page, tmp_path, f"live-list-{path.strip('/') or 'dashboard'}")
    page.close()
    assert errors == [] and len(opened) == 1, (errors, opened)
