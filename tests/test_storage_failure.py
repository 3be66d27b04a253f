"""Storage failure is loud and never leaves a run hanging; a stalled run is ended.

The disk fills up mid-run two ways: through the store's write seam (the exact
error SQLite raises on a full disk, on every write), and for real on a small
tmpfs filesystem (skipped where mounting is not allowed). Either way the run
ends ``failed`` naming the cause, a live follower receives the end, the API,
OTLP ingest and pages answer 503 with ``Retry-After``, and once space returns
the studio works again without a restart. Models are fakes at the network
edge: one that waits for the test to open a gate, one that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup
from litestar.testing import TestClient

from agents.providers.base import Completion
from app.auth.keys import create_key
from app.core.settings import Settings
from app.main import create_app
from app.runs.watchdog import last_progress
from app.store import Store
from app.store.db import UNENDED_FILE, StorageUnavailable, storage_failure
from app.store.events import record_event
from app.store.failures import fail_active_run
from app.store.runs import create_run, events_after
from tests.conftest import agent_config, csrf, wait_for_run
from tests.receivers import wait_until
from tests.test_sse import SSE, iter_sse

DISK_FULL = "the database disk is full"
GATED = "gated-model"
HANGING = "hanging-model"
ANSWER = "The disk is fine."


def disk_full_error() -> sqlite3.OperationalError:
    """What SQLite raises when a write finds the disk full."""
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return exc


def disk_full(fn: Callable[..., Any]) -> None:
    raise disk_full_error()


class GatedProvider:
    """A model that starts answering only when the test opens its gate."""

    name = "gated"
    models = (GATED,)

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.gate = threading.Event()

    async def stream(self, messages, tools, params):  # type: ignore[no-untyped-def]
        self.waiting.set()
        await asyncio.to_thread(self.gate.wait, 30)
        for word in ANSWER.split(" "):
            yield word + " "
        yield Completion(
            text=ANSWER, model=params.model, input_tokens=5, output_tokens=4, finish_reason="stop"
        )


class HangingProvider:
    """A model server that accepts the request and never sends a byte."""

    name = "hanging"
    models = (HANGING,)

    async def stream(self, messages, tools, params):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()
        yield ""  # never reached: makes this an async generator


@pytest.fixture
def provider() -> Iterator[GatedProvider]:
    gated = GatedProvider()
    yield gated
    gated.gate.set()  # never leave a thread waiting on it


@pytest.fixture
def app(settings: Settings, provider: GatedProvider):  # type: ignore[no-untyped-def]
    return create_app(settings, extra_providers=[provider])


def start_run(client: Any, model: str = GATED) -> str:
    r = client.post("/api/runs", json={"prompt": "is the disk fine?", "model": model, "tools": []})
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


class Follower(threading.Thread):
    """A live reader of ``/api/runs/{id}/events`` over real HTTP."""

    def __init__(self, url: str, key: str, run_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.run_id = url, key, run_id
        self.events: list[SSE] = []
        self.first = threading.Event()
        self.closed = threading.Event()

    def run(self) -> None:
        headers = {"X-API-Key": self.key}
        with (
            httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(30.0)) as c,
            c.stream("GET", f"/api/runs/{self.run_id}/events") as response,
        ):
            for event in iter_sse(response):
                self.events.append(event)
                self.first.set()
        self.closed.set()


def otlp_trace() -> dict[str, Any]:
    now = time.time_ns()
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "invoke_agent storage-test",
        "startTimeUnixNano": str(now - 1_000_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}}],
    }
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert DISK_FULL in response.text


# --- the disk fills up mid-run ------------------------------------------------------------


def test_disk_full_mid_run_ends_the_run_and_the_studio_recovers(live_server, app, provider):
    store: Store = app.state.store
    key = live_server.admin_key
    with httpx.Client(
        base_url=live_server.url, headers={"X-API-Key": key}, timeout=httpx.Timeout(10.0)
    ) as http:
        assert http.get("/api/health").json() == {"status": "ok"}
        run_id = start_run(http)
        assert provider.waiting.wait(10)
        follower = Follower(live_server.url, key, run_id)
        follower.start()
        assert follower.first.wait(10), "the follower got nothing"

        store.before_write = disk_full
        provider.gate.set()

        # The live follower receives the end, and its stream closes.
        assert follower.closed.wait(20), "the live stream did not end"
        end = follower.events[-1]
        assert end.event == "run_failed"
        assert DISK_FULL in end.json["payload"]["error"]
        assert end.json["run"]["status"] == "failed"
        seqs = [int(e.id or 0) for e in follower.events]
        assert seqs == list(range(1, len(seqs) + 1))

        # Health, the JSON API and OTLP ingest say why, with Retry-After.
        health = http.get("/api/health")
        assert_503(health)
        assert health.json()["status"] == "degraded"
        assert health.json()["storage"] == DISK_FULL
        assert_503(http.post("/v1/traces", json=otlp_trace()))
        assert_503(http.post("/api/runs", json={"prompt": "again", "model": GATED}))

        # The end waits to be written, in memory and on disk for the next start.
        assert store.unended() == [run_id]
        marker = json.loads((store.path.parent / UNENDED_FILE).read_text())
        assert [entry["run_id"] for entry in marker] == [run_id]
        # A follower arriving now still learns that the run is over.
        late = Follower(live_server.url, key, run_id)
        late.start()
        assert late.closed.wait(20), "a late follower was left waiting"
        assert late.events[-1].event == "run_failed"
        assert [e.id for e in late.events] == [e.id for e in follower.events]

        # Space returns: the studio notices by itself (no request needed) ...
        store.before_write = None
        wait_until(lambda: http.get("/api/health").status_code == 200, timeout=20, what="recovery")
        assert http.get("/api/health").json() == {"status": "ok"}
        detail = http.get(f"/api/runs/{run_id}").json()
        assert detail["run"]["status"] == "failed"
        assert DISK_FULL in detail["run"]["error"]
        assert not (store.path.parent / UNENDED_FILE).exists()
        stored = store.read_sync(events_after, run_id, 0, 1000)
        assert stored[-1]["type"] == "run_failed"

        # ... and new runs succeed without a restart.
        next_run = start_run(http)
        assert wait_for_run(http, next_run)["run"]["status"] == "succeeded"
        assert http.post("/v1/traces", json=otlp_trace()).status_code == 200


def test_an_event_that_cannot_be_recorded_fails_its_run_without_a_hole(client, app, provider):
    """Not a storage failure: one event's own write fails (a bug, a constraint). The loop
    did not wait for that event, yet the run ends failed, saying so, and nothing after
    the lost event is stored as if it had not been lost."""
    store: Store = app.state.store
    broken = {"left": 1}

    def break_once(fn: Callable[..., Any]) -> None:
        if fn is record_event and broken["left"]:
            broken["left"] = 0
            raise ValueError("this event breaks a projection")

    run_id = start_run(client)
    assert provider.waiting.wait(10)
    store.before_write = break_once
    provider.gate.set()
    detail = wait_for_run(client, run_id)
    store.before_write = None
    assert detail["run"]["status"] == "failed"
    assert "this event breaks a projection" in detail["run"]["error"]
    stored = store.read_sync(events_after, run_id, 0, 1000)
    kinds = [e["type"] for e in stored]
    # The call's end was lost: nothing after it but the run's failure.
    before = ["run_started", "message", "memory_snapshot", "llm_call_started"]
    assert kinds[:4] == before and set(kinds[4:-1]) == {"token"} and kinds[-1] == "run_failed"
    assert [m["role"] for m in detail["messages"]] == ["user"]


def test_end_of_the_run_is_retried_until_it_can_be_written(client, app, provider):
    store: Store = app.state.store
    failures = {"left": 2}  # the event write, then the first try at writing the run's end

    def fail_twice(fn: Callable[..., Any]) -> None:
        if fn in (record_event, fail_active_run) and failures["left"] > 0:
            failures["left"] -= 1
            raise disk_full_error()

    run_id = start_run(client)
    assert provider.waiting.wait(10)
    store.before_write = fail_twice
    provider.gate.set()
    detail = wait_for_run(client, run_id)
    assert detail["run"]["status"] == "failed"
    assert detail["run"]["error"] == f"storage failure: {DISK_FULL}; the run was stopped"
    assert failures["left"] == 0 and store.unended() == []
    assert store.read_sync(events_after, run_id, 0, 1000)[-1]["type"] == "run_failed"
    # The agent stopped at the failed write: no answer was generated into the void.
    assert [m["role"] for m in detail["messages"]] == ["user"]
    assert client.get("/api/health").json() == {"status": "ok"}


def test_a_run_whose_end_could_not_be_written_is_failed_at_the_next_start(settings, keys, provider):
    app = create_app(settings, extra_providers=[provider])
    with TestClient(app) as client:
        client.headers["X-API-Key"] = keys["admin"]
        run_id = start_run(client)
        assert provider.waiting.wait(10)
        app.state.store.before_write = disk_full
        provider.gate.set()
        wait_until(
            lambda: app.state.store.unended() == [run_id], timeout=20, what="the run's end given up"
        )
        # The server stops while the disk is still full.
    assert (settings.data_dir / UNENDED_FILE).exists()

    with TestClient(create_app(settings, extra_providers=[provider])) as client:
        client.headers["X-API-Key"] = keys["admin"]
        run = client.get(f"/api/runs/{run_id}").json()["run"]
        assert run["status"] == "failed"  # not swept to "interrupted"
        assert DISK_FULL in run["error"]
    assert not (settings.data_dir / UNENDED_FILE).exists()


def test_a_page_says_the_disk_is_full(page_client, app):
    app.state.store.before_write = disk_full
    r = page_client.post(
        "/runs",
        data={"prompt": "hello", "model": GATED, "_csrf_token": csrf(page_client)},
        headers={"Accept": "text/html"},
        follow_redirects=False,
    )
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) > 0
    page = BeautifulSoup(r.text, "html.parser")
    assert DISK_FULL in page.select_one(".error-page").get_text()
    # Every page says so while the store is degraded, not only the one whose write failed.
    banner = BeautifulSoup(page_client.get("/runs").text, "html.parser").select_one(
        ".storage-banner"
    )
    assert banner is not None and DISK_FULL in banner.get_text()
    app.state.store.before_write = None
    asyncio.run(app.state.store.probe())  # what the watchdog does every few seconds
    page = BeautifulSoup(page_client.get("/runs/new").text, "html.parser")
    assert page.select_one(".storage-banner") is None


# --- a real full filesystem ---------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    return filler


def test_real_full_filesystem(tmp_path, fake_mistral, provider):
    with small_filesystem(tmp_path / "fs", "4m") as fs:
        settings = Settings(data_dir=fs / "data", agent_config=agent_config(fake_mistral.url))
        store = Store(settings.db_path)
        key = store.write_sync(create_key, "admin-key", "admin")[1]
        store.close()
        app = create_app(settings, extra_providers=[provider])
        with TestClient(app) as client:
            client.headers["X-API-Key"] = key
            run_id = start_run(client)
            assert provider.waiting.wait(10)
            filler = fill_up(fs)
            provider.gate.set()
            wait_until(
                lambda: app.state.store.unended() == [run_id],
                timeout=20,
                what="the run's end given up",
            )
            health = client.get("/api/health")
            assert_503(health)  # SQLite's own SQLITE_FULL from a full filesystem

            filler.unlink()
            run = wait_for_run(client, run_id)["run"]
            assert run["status"] == "failed" and DISK_FULL in run["error"]
            next_run = start_run(client)
            assert wait_for_run(client, next_run)["run"]["status"] == "succeeded"
            assert client.get("/api/health").json() == {"status": "ok"}


# --- the store's own classification and health ----------------------------------------


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (sqlite3.SQLITE_FULL, DISK_FULL),
        (sqlite3.SQLITE_IOERR, "a disk I/O error on the database"),
        (sqlite3.SQLITE_IOERR | (3 << 8), "a disk I/O error on the database"),  # IOERR_WRITE
        (sqlite3.SQLITE_READONLY, "the database file is read-only"),
        (sqlite3.SQLITE_CANTOPEN, "the database file cannot be opened"),
    ],
)
def test_errors_that_mean_the_store_cannot_write(code, cause):
    exc = sqlite3.OperationalError("some words")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    failure = storage_failure(exc)
    assert isinstance(failure, StorageUnavailable) and failure.cause == cause
    assert cause in str(failure)


def test_other_errors_are_not_storage_failures():
    assert storage_failure(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert storage_failure(sqlite3.OperationalError("no such table: nope")) is None
    # Without a code (raised by hand), the message says it.
    assert storage_failure(sqlite3.OperationalError("disk I/O error")) is not None


def test_a_read_only_database_degrades_the_store_until_a_write_succeeds(db):
    run = {"id": "r1", "prompt": "p", "model": "m", "provider": "x"}
    db.write_sync(lambda conn: conn.execute("pragma query_only = 1"))
    with pytest.raises(StorageUnavailable, match="the database file is read-only"):
        db.write_sync(create_run, run)
    assert db.health.cause == "the database file is read-only" and db.health.since
    # The file becomes writable again. query_only refuses even the BEGIN IMMEDIATE of
    # a write, so it is lifted on the writer's own connection, outside a transaction.
    db.maintain_sync(lambda conn: conn.execute("pragma query_only = 0"))
    db.write_sync(lambda conn: conn.execute("select 1"))  # the next write succeeds
    assert db.health.ok
    assert db.write_sync(create_run, run)["status"] == "queued"


# --- the watchdog ------------------------------------------------------------------------


def test_watchdog_fails_a_run_that_makes_no_progress(settings, keys):
    settings.run_stall_timeout_s = 1.0
    app = create_app(settings, extra_providers=[HangingProvider()])
    with TestClient(app) as client:
        client.headers["X-API-Key"] = keys["admin"]
        run_id = start_run(client, HANGING)
        run = wait_for_run(client, run_id)["run"]
        assert run["status"] == "failed"
        assert run["error"] == "no progress for 1 s: the run was stopped"
        wait_until(
            lambda: run_id not in app.state.runner.tasks, timeout=20, what="the run's task to end"
        )
        log = app.state.store.read_sync(events_after, run_id, 0, 1000)
        assert [e["type"] for e in log][-1] == "run_failed"
        assert "run_interrupted" not in [e["type"] for e in log]
        assert client.get("/api/health").json() == {"status": "ok"}


def test_a_parent_progresses_while_its_helper_run_does():
    rows = [
        {"id": "parent", "parent_run_id": None, "parent_kind": None, "last_at": 100.0},
        {"id": "helper", "parent_run_id": "parent", "parent_kind": "agent", "last_at": 500.0},
        {"id": "replay", "parent_run_id": "parent", "parent_kind": "replay", "last_at": 900.0},
    ]
    assert last_progress(rows) == {"parent": 500.0, "helper": 500.0, "replay": 900.0}
