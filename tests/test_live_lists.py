"""Live run lists (``/runs/live``) show every run once, and update only the rows they show.

A page reads its rows, then its stream subscribes. The stream begins with the
rows as they are once it has subscribed, so a run created in between is not
missed; after that it updates only rows it has sent, because an update for a
row the page does not have is an error in the browser (``htmx:oobErrorNoTarget``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup

from app.store.live import LiveEvent
from app.store.runs import create_run
from tests.test_odd_data import _publisher, _wait_for_followers
from tests.test_sse import SSE, iter_sse

pytestmark = pytest.mark.both_backends


def _run(run_id: str, prompt: str, started_at: float) -> dict[str, Any]:
    return {"id": run_id, "status": "running", "prompt": prompt, "started_at": started_at}


def _row_ids(html: str) -> list[str]:
    soup = BeautifulSoup(f"<table>{html}</table>", "html.parser")
    return [str(tr["id"]) for tr in soup.select("tr[id^=run-row-]")]


@pytest.mark.parametrize("compact", [False, True], ids=["runs page", "dashboard"])
def test_a_live_list_begins_with_its_rows_and_updates_only_those(
    live_server: Any, app: Any, compact: bool
) -> None:
    store = app.state.store
    rows = 10 if compact else 50
    # One more running run than the list shows: the oldest is not on the page.
    for i in range(rows + 1):
        store.write_sync(create_run, _run(f"run-{i:03d}", f"prompt {i}", 1000.0 + i))
    publish = _publisher(live_server, app)
    others = app.state.broker.subscriber_count("*")
    url = "/runs/live?compact=true" if compact else "/runs/live"
    headers = {"X-API-Key": live_server.admin_key}
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=5) as http,
        http.stream("GET", url) as stream,
    ):
        events = iter_sse(stream)
        first = next(events)
        # The rows as they are, newest first, ready to replace the live table's body.
        assert first.event == "run_list", first
        assert 'hx-swap-oob="innerHTML:#runs-tbody[sse-swap]"' in first.data
        listed = [f"run-row-run-{i:03d}" for i in range(rows, 0, -1)]
        assert _row_ids(first.data) == listed
        _wait_for_followers(app, "*", 1, others)

        oldest = _run("run-000", "prompt 0", 1000.0) | {"status": "succeeded"}
        shown = _run(f"run-{rows:03d}", "newest", 2000.0) | {"status": "succeeded"}
        late = _run("run-late", "created late", 3000.0)
        # Not on the page: nothing is sent (the browser has no row to update).
        publish(LiveEvent("run-000", 5, "run_finished", {}, oldest))
        # Created before the stream read its rows, announced after: an update, not a second row.
        publish(LiveEvent(shown["id"], 0, "run_created", {}, shown))
        publish(LiveEvent("run-late", 0, "run_created", {}, late))
        publish(LiveEvent("run-late", 1, "run_started", {}, late))
        got: list[SSE] = [next(events) for _ in range(3)]

    assert [e.event for e in got] == ["run_update", "run_new", "run_update"], got
    assert _row_ids(got[0].data) == [f"run-row-{shown['id']}"]
    assert "status-succeeded" in got[0].data
    assert _row_ids(got[1].data) == ["run-row-run-late"]
    assert _row_ids(got[2].data) == ["run-row-run-late"]
    assert all("run-000" not in e.data for e in got)


def test_an_empty_live_list_begins_with_its_empty_row(live_server: Any) -> None:
    headers = {"X-API-Key": live_server.admin_key}
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=5) as http,
        http.stream("GET", "/runs/live") as stream,
    ):
        first = next(iter_sse(stream))
    assert first.event == "run_list" and 'id="runs-empty"' in first.data
