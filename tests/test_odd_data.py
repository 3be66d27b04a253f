"""Pages, JSON lists and live streams render whatever odd data is stored.

Rows are written straight into the store, as an old version, an OTLP
instrumentation or a hand-edited database could leave them: optional fields
missing or empty, 1 MB texts, NUL, lone surrogates inside JSON, 64-bit
extremes, infinities and NaN. Every page answers 200 and shows "—" where a
value is missing; a prompt-less (OTLP) run is named by its root span.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup
from litestar.testing import TestClient

from app.core.settings import Settings
from app.main import create_app
from app.store import Store
from app.store.live import LiveEvent
from app.store.runs import create_run
from tests.conftest import login
from tests.odd_rows import seed_odd_data
from tests.receivers import wait_until
from tests.test_sse import SSE, iter_sse

pytestmark = pytest.mark.both_backends


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app over a store full of odd rows, logged in as an admin (pages and API alike)."""
    from app.auth.keys import create_key
    from tests.conftest import agent_config

    data_dir = tmp_path_factory.mktemp("odd") / "data"
    settings = Settings(data_dir=data_dir, agent_config=agent_config())
    store = Store(settings.db_path, url=settings.database_url)
    ids = seed_odd_data(store)
    key = store.write_sync(create_key, "admin-key", "admin")[1]
    store.close()
    with TestClient(create_app(settings)) as client:
        login(client, key)
        client.headers["X-API-Key"] = key
        yield client, ids


def _ok(client: TestClient, url: str) -> BeautifulSoup:
    r = client.get(url, headers={"Accept": "text/html"})
    assert r.status_code == 200, (url, r.status_code, r.text[:2000])
    r.text.encode("utf-8")  # the body is valid UTF-8 (no lone surrogates leaked)
    return BeautifulSoup(r.text, "html.parser")


PAGES = [
    "/",
    "/runs",
    "/runs?q=odd",
    "/sessions",
    "/evals",
    "/evals?range=90d",
    "/?range=90d",
    "/experiments",
    "/datasets",
    "/diffs/new",
    "/exports",
    "/finetune",
    "/alerts",
]


@pytest.mark.parametrize("url", PAGES)
def test_every_list_page_renders_odd_rows(odd: tuple[TestClient, dict[str, str]], url: str) -> None:
    client, _ = odd
    _ok(client, url)


def test_odd_datasets_and_experiments_render(odd: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = odd
    experiments = client.get("/api/experiments").json()["experiments"]
    assert len(experiments) == 2
    for x in experiments:
        _ok(client, f"/experiments/{x['id']}")
        assert client.get(f"/api/experiments/{x['id']}").status_code == 200
    a, b = (x["id"] for x in experiments)
    _ok(client, f"/experiments/compare?a={a}&b={b}")
    _ok(client, f"/datasets/{experiments[0]['dataset_id']}")


@pytest.mark.parametrize("kind", ["otlp", "bare", "empty", "huge", "odd", "soup"])
def test_every_run_page_renders(odd: tuple[TestClient, dict[str, str]], kind: str) -> None:
    client, ids = odd
    run_id = ids[kind]
    page = _ok(client, f"/runs/{run_id}")
    assert page.select_one("#run-status") is not None
    for sub in ("memory", "memory?step=2", "memory?step=3", "replay", "children"):
        _ok(client, f"/runs/{run_id}/{sub}")
    _ok(client, f"/diffs/new?a={run_id}&b={ids['odd']}")


def test_missing_values_show_a_dash_and_otlp_runs_their_span_name(
    odd: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = odd
    page = _ok(client, "/runs")
    prompt = {
        kind: page.select_one(f"#run-row-{run_id} td.prompt").text.strip()
        for kind, run_id in ids.items()
    }
    assert prompt["otlp"] == "chat gpt-4o-mini"
    assert prompt["bare"] == "—" and prompt["empty"] == "—"
    assert len(prompt["huge"]) < 100
    bare = page.select_one(f"#run-row-{ids['bare']}").text
    assert "—" in bare and "None" not in bare and "nan" not in bare
    totals = _ok(client, f"/runs/{ids['bare']}").select_one("#run-totals").text
    assert "None" not in totals and "—" in totals
    # On the dashboard too, where the list follows new runs live.
    dashboard = _ok(client, "/").select_one(f"#run-row-{ids['otlp']} td.prompt")
    assert dashboard.text.strip() == "chat gpt-4o-mini"


def test_sessions_with_odd_names_render(odd: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = odd
    sessions = client.get("/api/sessions").json()["sessions"]
    assert sessions
    for s in sessions:
        _ok(client, f"/sessions/{s['id']}")
        assert client.get(f"/api/sessions/{s['id']}").status_code == 200


JSON_LISTS = [
    "/api/runs",
    "/api/sessions",
    "/api/evals",
    "/api/evals/summary",
    "/api/experiments",
    "/api/datasets",
    "/api/exports",
    "/api/finetune",
    "/api/alerts",
]


@pytest.mark.parametrize("url", JSON_LISTS)
def test_json_lists_answer(odd: tuple[TestClient, dict[str, str]], url: str) -> None:
    client, _ = odd
    r = client.get(url)
    assert r.status_code == 200, (url, r.text[:2000])


@pytest.mark.parametrize("kind", ["otlp", "bare", "empty", "huge", "soup"])
def test_json_run_details_answer(odd: tuple[TestClient, dict[str, str]], kind: str) -> None:
    client, ids = odd
    for url in (f"/api/runs/{ids[kind]}", f"/api/runs/{ids[kind]}/memory"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:2000])


def test_json_run_details_with_lone_surrogates_in_stored_json(
    odd: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = odd
    for url in (f"/api/runs/{ids['odd']}", f"/api/runs/{ids['odd']}/memory"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:2000])


# --- Malformed requests: a 400 with a reason, never a 500 ----------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"prompt": "caf\xe9"}', "not valid UTF-8"),  # Latin-1, not UTF-8
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"prompt": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, "nested too deeply"),
    ],
)
def test_undecodable_bodies_are_a_400_with_a_reason(
    odd: tuple[TestClient, dict[str, str]], body: bytes, reason: str
) -> None:
    client, _ = odd
    for url in ("/api/runs", "/api/evals", "/api/datasets"):
        r = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (url, r.text)
        assert reason in r.json()["detail"]


@pytest.mark.parametrize(
    "last_id", ["99999999999999999999999", "9223372036854775808", "²", "-1", "1e3"]
)
def test_a_last_event_id_out_of_range_is_ignored(
    odd: tuple[TestClient, dict[str, str]], last_id: str
) -> None:
    client, ids = odd  # the "huge" run has ended: its whole log is replayed, then the stream ends
    for url in (f"/api/runs/{ids['huge']}/events", f"/runs/{ids['huge']}/events"):
        r = client.get(url, headers={"Last-Event-ID": last_id.encode()})
        assert r.status_code == 200, r.text
        assert re.findall(r"^id: (\d+)", r.text, re.MULTILINE) == ["1", "2", "3"]


@pytest.mark.parametrize("after", ["99999999999999999999999", "9223372036854775808"])
def test_an_after_out_of_range_is_a_400(odd: tuple[TestClient, dict[str, str]], after: str) -> None:
    client, ids = odd
    for url in (f"/api/runs/{ids['huge']}/events", f"/runs/{ids['huge']}/events"):
        r = client.get(url, params={"after": after}, headers={"Accept": "application/json"})
        assert r.status_code == 400, r.text
        assert "after" in r.text


# --- Live streams: one event that fails to render never ends a stream -----------------------


class Unprintable:
    """A published value that has no text: stands for any render error of one event."""

    def __str__(self) -> str:
        raise ValueError("this value has no text")


def _publisher(live_server: Any, app: Any) -> Callable[[LiveEvent], None]:
    """Publish on the app's broker from the test thread, in the server's event loop."""
    loop = live_server.server.servers[0].get_loop()
    return lambda event: loop.call_soon_threadsafe(app.state.broker.publish, event)


def _wait_for_followers(app: Any, key: str, n: int, already: int = 0) -> None:
    """Until ``n`` more than ``already`` follow ``key`` (a stream subscribes once it starts)."""
    wait_until(
        lambda: app.state.broker.subscriber_count(key) >= already + n,
        10,
        f"{n} followers of {key} to subscribe",
    )


def _read(response: httpx.Response, n: int) -> list[SSE]:
    events: list[SSE] = []
    for event in iter_sse(response):
        if event.event == "run_list":
            continue  # a live list's rows when it opened (tests/test_live_lists.py)
        events.append(event)
        if len(events) == n:
            break
    return events


def test_live_lists_send_a_placeholder_and_go_on(live_server, app, caplog) -> None:
    publish = _publisher(live_server, app)
    headers = {"X-API-Key": live_server.admin_key}
    others = app.state.broker.subscriber_count("*")  # the studio's own watchers
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=5) as http,
        http.stream("GET", "/runs/live") as first,
        http.stream("GET", "/runs/live?compact=true") as second,
    ):
        _wait_for_followers(app, "*", 2, others)
        bad = {"id": "bad-run", "status": Unprintable(), "prompt": "bad"}
        good = {"id": "good-run", "status": "running", "prompt": "the next run"}
        publish(LiveEvent("bad-run", 0, "run_created", {}, bad))
        publish(LiveEvent("good-run", 0, "run_created", {}, good))
        publish(LiveEvent("good-run", 1, "run_started", {}, good | {"model": Unprintable()}))
        for stream in (first, second):
            placeholder, created, updated = _read(stream, 3)
            assert placeholder.event == "run_new" and "render-error" in placeholder.data
            assert created.event == "run_new" and "the next run" in created.data
            assert updated.event == "run_update"
    assert "could not render the live partial 'run_new'" in caplog.text


def test_run_streams_send_a_placeholder_and_go_on(live_server, app) -> None:
    publish = _publisher(live_server, app)
    run_id = "live-run-0000-0000-000000000000"
    app.state.store.write_sync(create_run, {"id": run_id, "status": "running", "prompt": "hi"})
    headers = {"X-API-Key": live_server.admin_key}
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=5) as http,
        http.stream("GET", f"/runs/{run_id}/events") as page,
        http.stream("GET", f"/runs/{run_id}/events") as other_page,
        http.stream("GET", f"/api/runs/{run_id}/events") as api,
    ):
        _wait_for_followers(app, run_id, 3)
        publish(LiveEvent(run_id, 1, "message", {"role": "user", "content": Unprintable()}))
        publish(LiveEvent(run_id, 2, "message", {"role": "assistant", "content": "still here"}))
        publish(LiveEvent(run_id, 3, "no_partial_for_this", {}))
        publish(LiveEvent(run_id, 4, "run_finished", {}, {"id": run_id, "status": "succeeded"}))
        for stream in (page, other_page):
            events = list(iter_sse(stream))  # the stream ends by itself
            assert [e.id for e in events] == ["1", "2", "3", "4", None]
            assert "render-error" in events[0].data and events[0].data.startswith("<li")
            assert "still here" in events[1].data
            assert "render-error" in events[2].data
            assert events[-1].event == "stream_end"
        events = list(iter_sse(api))
        assert [e.json["seq"] for e in events] == [1, 2, 3, 4]
        assert events[0].json["error"] == "this event could not be encoded"
        assert events[1].json["payload"]["content"] == "still here"


def test_job_streams_skip_an_update_that_fails_and_go_on(live_server, app) -> None:
    publish = _publisher(live_server, app)
    export = {"kind": "wandb", "status": "running", "created_at": time.time(), "progress": 0.1}
    export_id = app.state.store.write_sync(lambda db: db["exports"].insert(export).last_pk)
    key = f"export:{export_id}"
    headers = {"X-API-Key": live_server.admin_key}
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=5) as http,
        http.stream("GET", f"/exports/{export_id}/events") as stream,
    ):
        _wait_for_followers(app, key, 1)
        row = {**export, "id": export_id}
        publish(LiveEvent(key, 1, "export_progress", row | {"kind": Unprintable()}))
        publish(
            LiveEvent(key, 2, "export_progress", row | {"status": "succeeded", "stage": "done"})
        )
        events = list(iter_sse(stream))
    assert [e.event for e in events] == ["export_progress", "export_progress", "stream_end"]
    assert "done" in events[1].data


def test_bracket_soup_is_shown_as_plain_text_not_parsed() -> None:
    """Python-Markdown would scan to the end of the text at every unclosed bracket."""
    from app.web.markdown_budget import link_scan_cost
    from app.web.render import render_markdown
    from tests.odd_rows import SOUP

    assert link_scan_cost(SOUP) > 10**7
    html = render_markdown(SOUP + "<script>x</script>")
    assert html.startswith('<pre class="plain">') and "<script>" not in html
    # Ordinary Markdown with many links is still rendered.
    links = render_markdown("[a](https://example.org) " * 2000)
    assert links.count("<a href") == 2000
