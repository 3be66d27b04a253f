"""Retention: old runs go with everything that hangs off them, kept ones stay, totals stay
right, space comes back; pins over the API and the page forms.

Runs are seeded through the real event log (``record_event``) and OTLP ingest,
then a pass runs through the app's own store (``store.write``/``maintain``),
and the studio is read back over HTTP: dashboard, sessions, search.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from agents.events import (
    LLMCallFinished,
    MemorySnapshot,
    MessageAdded,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from app.auth.keys import create_key
from app.core.settings import Settings
from app.experiments.datasets import dataset_from_runs
from app.runs.retention_task import DAY_S, Retention
from app.store import Store
from app.store.events import record_event
from app.store.retention import delete_expired, hanging_off_runs, reclaim, space
from app.store.runs import create_run
from tests.conftest import agent_config, api_client, csrf, login
from tests.otlp_requests import export, post, span
from tests.receivers import wait_until

pytestmark = pytest.mark.both_backends

DAYS = 30
OLD = time.time() - 40 * DAY_S
NEW = time.time() - 3600


def seed(
    store: Store,
    run_id: str,
    started: float,
    *,
    session: str | None = None,
    ended: bool = True,
    word: str = "",
    parent: tuple[str, str] | None = None,
    big: int = 0,
) -> None:
    """A run with messages, a tool call, a model call (span), a memory snapshot and events."""
    prompt = f"question {word} " + "x" * big
    store.write_sync(
        create_run,
        {
            "id": run_id,
            "model": "mistral-small-latest",
            "provider": "mistral",
            "prompt": prompt,
            "session_id": session,
            "started_at": started,
            "params": {},
            "parent_run_id": parent[0] if parent else None,
            "parent_kind": parent[1] if parent else None,
        },
    )
    call = {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
    events: list[Any] = [
        RunStarted(model="mistral-small-latest", provider="mistral", params={}, at=started),
        MessageAdded(role="user", content=prompt, at=started),
        MemorySnapshot(
            step=1,
            label="start",
            messages=({"role": "user", "content": prompt},),
            scratch={},
            at=started,
        ),
        MessageAdded(role="assistant", content="", tool_calls=(call,), at=started + 1),
        ToolCallStarted(call_id="c1", name="t", arguments={}, at=started + 1),
        ToolCallFinished(
            call_id="c1",
            name="t",
            arguments={},
            result="ok",
            error=None,
            latency_ms=1,
            at=started + 2,
        ),
        LLMCallFinished(
            model="mistral-small-latest",
            provider="mistral",
            input_tokens=100,
            output_tokens=10,
            latency_ms=5,
            at=started + 3,
        ),
        MessageAdded(role="assistant", content=f"answer {word}", at=started + 3),
    ]
    if ended:
        events.append(RunFinished(response=f"answer {word}", at=started + 4))
    for seq, event in enumerate(events, 1):
        store.write_sync(record_event, run_id, seq, event.to_dict())


def sql(store: Store, statement: str, params: list[Any] | None = None) -> list[Any]:
    return store.read_sync(lambda db: [tuple(r) for r in db.execute(statement, params or [])])


def exec_sql(store: Store, statement: str, params: list[Any] | None = None) -> None:
    store.write_sync(lambda db: db.execute(statement, params or []))


def run_pass(store: Store, days: float = DAYS, batch: int = 200) -> Any:
    async def go() -> Any:
        return await Retention(store, days, batch=batch).run_pass()

    return asyncio.run(go())


def child_rows(store: Store, run_ids: set[str]) -> dict[str, int]:
    """Rows of every table that names a run, for these runs."""
    marks = ",".join("?" * len(run_ids))
    found = {}
    for table, column in store.read_sync(hanging_off_runs):
        [(n,)] = sql(
            store, f'SELECT count(*) FROM "{table}" WHERE "{column}" IN ({marks})', [*run_ids]
        )
        found[f"{table}.{column}"] = n
    return found


def kpi(client: Any, label: str) -> str:
    page = BeautifulSoup(client.get("/").text, "html.parser")
    for box in page.select("#kpis .kpi"):
        if box.select_one(".label").text == label:
            return box.select_one(".value").text.strip()
    raise AssertionError(f"no KPI {label!r}")


# --- the whole picture ---------------------------------------------------------------------


@pytest.fixture
def studio(client: Any, app: Any) -> tuple[Any, Store]:
    """Old and new runs of every kind, and every kind of row hanging off them."""
    store: Store = app.state.store
    seed(store, "old-plain", OLD, session="mixed", word="zebra")
    seed(store, "old-only", OLD + 1, session="gone", word="yak")
    seed(store, "old-agent", OLD + 2)
    seed(store, "old-helper", OLD + 2.5, parent=("old-agent", "agent"))
    seed(store, "new-plain", NEW, session="mixed", word="walrus")
    # Kept whatever their age:
    seed(store, "old-pinned", OLD, word="pinned")
    seed(store, "old-pinned-eval", OLD)
    seed(store, "old-dataset", OLD)
    seed(store, "old-experiment", OLD)
    seed(store, "old-parent", OLD, word="parent")
    seed(store, "new-replay", NEW, parent=("old-parent", "replay"))
    seed(store, "old-active", OLD, ended=False)
    exec_sql(store, "UPDATE runs SET status = 'running', ended_at = NULL WHERE id = 'old-active'")
    # What hangs off the old runs besides their own log: evaluations, diffs, alerts, OTLP.
    for run_id in ("old-plain", "old-pinned-eval", "new-plain"):
        r = client.post("/api/evals", json={"run_id": run_id, "metric": "score", "value": 0.5})
        assert r.status_code == 201, r.text
    eval_id = sql(store, "SELECT id FROM evaluations WHERE run_id = 'old-pinned-eval'")[0][0]
    assert client.post(f"/api/evals/{eval_id}/pin").json()["pinned"] is True
    assert client.post("/api/runs/old-pinned/pin").json()["pinned"] is True
    now = time.time()
    for a, b in (("old-plain", "old-only"), ("old-parent", "new-replay")):
        exec_sql(
            store,
            "INSERT INTO diffs (id, run_a, run_b, kind, status, created_at)"
            " VALUES (?, ?, ?, 'compare', 'pending', ?)",
            [f"{a}-{b}", a, b, now],
        )
    exec_sql(
        store, "INSERT INTO alert_rules (id, name, kind, created_at) VALUES (1, 'r', 'run_cost', 0)"
    )
    exec_sql(
        store,
        "INSERT INTO alerts (id, rule_id, fingerprint, run_id, created_at) VALUES (1, 1, 'f', 'old-plain', 0)",
    )
    exec_sql(
        store,
        "INSERT INTO alert_deliveries (alert_id, channel, status) VALUES (1, 'webhook', 'sent')",
    )
    store.write_sync(dataset_from_runs, "kept", ["old-dataset"])
    exec_sql(
        store,
        "INSERT INTO experiments (id, name, dataset_id, status, created_at) VALUES (1, 'e', 1, 'succeeded', 0)",
    )
    exec_sql(
        store,
        "INSERT INTO experiment_items (experiment_id, item_id, idx, run_id, status)"
        " VALUES (1, 1, 0, 'old-experiment', 'succeeded')",
    )
    # An ingested trace (timestamps of 2023) with a log record on its span, and
    # telemetry that never found a run, received long ago.
    trace = export(span("agent", 7, 1, gen_ai__operation__name="invoke_agent"))
    assert post(client, trace, "protobuf").status_code == 200
    exec_sql(
        store,
        "INSERT INTO otlp_logs (trace_id, span_id, run_id, received_at) VALUES"
        " ((SELECT trace_id FROM otlp_traces), '1', (SELECT run_id FROM otlp_traces), ?),"
        " ('ab', 'cd', NULL, ?), ('ef', '01', NULL, ?)",
        [OLD, OLD, now],
    )
    exec_sql(
        store, "INSERT INTO otlp_metrics (name, received_at) VALUES ('m', ?), ('m', ?)", [OLD, now]
    )
    return client, store


KEPT = {
    "new-plain",
    "old-pinned",
    "old-pinned-eval",
    "old-dataset",
    "old-experiment",
    "old-parent",
    "new-replay",
    "old-active",
}


def test_a_pass_deletes_old_runs_with_everything_hanging_off_them(studio):
    client, store = studio
    [(otlp_run,)] = sql(store, "SELECT run_id FROM otlp_traces")
    gone = {"old-plain", "old-only", "old-agent", "old-helper", otlp_run}
    before = child_rows(store, gone)
    for kind in (
        "events.run_id", "messages.run_id", "tool_calls.run_id", "spans.run_id",
        "memory_snapshots.run_id", "evaluations.run_id", "diffs.run_a", "diffs.run_b",
        "alerts.run_id", "otlp_traces.run_id", "otlp_logs.run_id",
    ):  # fmt: skip
        assert before[kind] > 0, kind  # so the test below can fail
    assert kpi(client, "Runs") == str(len(KEPT | gone))
    assert client.get("/api/runs", params={"q": "zebra"}).json()["total"] == 1

    done = run_pass(store, batch=2)  # small batches: an agent's helper goes before it

    ids = {r[0] for r in sql(store, "SELECT id FROM runs")}
    assert ids == KEPT
    assert done.deleted.runs == len(gone)
    assert set(child_rows(store, gone).values()) == {0}
    assert sql(store, "SELECT count(*) FROM alert_deliveries") == [(0,)]
    assert sql(store, "SELECT count(*) FROM diffs") == [(1,)]  # the kept replay's
    # Telemetry that never found a run goes when old; recent stays.
    assert sql(store, "SELECT trace_id FROM otlp_logs") == [("ef",)]
    assert sql(store, "SELECT count(*) FROM otlp_metrics") == [(1,)]
    # Kept runs keep what hangs off them.
    assert child_rows(store, {"old-pinned"})["events.run_id"] > 0
    assert (
        len(client.get("/api/evals", params={"run_id": "old-pinned-eval"}).json()["evaluations"])
        == 1
    )

    # Totals: dashboard, sessions and search agree with what is left.
    assert kpi(client, "Runs") == str(len(KEPT))
    [(tin, tout)] = sql(store, "SELECT sum(input_tokens), sum(output_tokens) FROM runs")
    assert kpi(client, "Tokens in / out") == f"{tin} / {tout}"
    sessions = {s["name"]: s for s in client.get("/api/sessions").json()["sessions"]}
    assert "gone" not in sessions
    assert sessions["mixed"]["runs"] == 1 and sessions["mixed"]["finished"] == 1
    assert sessions["mixed"]["input_tokens"] == 100
    assert sessions["mixed"]["created_at"] == pytest.approx(NEW)
    assert client.get("/api/runs", params={"q": "zebra"}).json()["total"] == 0
    assert client.get("/api/runs", params={"q": "walrus"}).json()["total"] == 1
    assert client.get("/api/runs", params={"q": "pinned"}).json()["total"] == 1
    if store.url is None:  # SQLite's full-text index is a table of its own: still whole?
        store.write_sync(
            lambda db: db.execute("INSERT INTO runs_fts(runs_fts) VALUES('integrity-check')")
        )
    for path in ("/", "/runs", "/sessions", "/evals", "/runs/new-replay", "/runs/old-parent"):
        assert client.get(path).status_code == 200, path

    # Unpinned, a run goes at the next pass; a second pass with nothing to do deletes nothing.
    assert client.delete("/api/runs/old-pinned/pin").json() == {
        "run_id": "old-pinned", "pinned": False, "pinned_at": None
    }  # fmt: skip
    assert run_pass(store).deleted.runs == 1
    assert run_pass(store).deleted.runs == 0


def test_a_write_deletes_at_most_its_batch(client, app):
    store: Store = app.state.store
    for i in range(5):
        seed(store, f"old-{i}", OLD + i)
    cutoff = time.time() - DAYS * DAY_S
    assert asyncio.run(_write(store, delete_expired, cutoff, 2)).runs == 2
    assert {r[0] for r in sql(store, "SELECT id FROM runs")} == {"old-2", "old-3", "old-4"}


async def _write(store: Store, fn: Any, *args: Any) -> Any:
    return await store.write(fn, *args)


# --- space -------------------------------------------------------------------------------


def old_file(path: Path) -> None:
    """A database file made before incremental vacuum existed (auto_vacuum NONE)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("CREATE TABLE made_before (x)")
    conn.commit()
    conn.close()


@pytest.mark.sqlite_only
def test_start_up_converts_an_old_file_and_the_pass_gives_space_back(settings, fake_mistral):
    db_path = settings.db_path
    old_file(db_path)
    store = Store(db_path)
    for i in range(60):
        seed(store, f"old-{i}", OLD + i, word="gnu" if i == 0 else "", big=40_000)
    seed(store, "new-0", NEW, word="okapi")
    assert store.read_sync(space).auto_vacuum == 0
    store.close()

    kept = Settings(
        data_dir=settings.data_dir, agent_config=agent_config(fake_mistral.url), retention_days=DAYS
    )
    store = Store(db_path)
    key = store.write_sync(create_key, "admin-2", "admin")[1]
    store.close()
    with api_client(kept, key) as client:
        store = client.app.state.store
        # The start-up pass converts the file (one VACUUM), deletes and reclaims by itself.
        wait_until(
            lambda: sql(store, "SELECT count(*) FROM runs") == [(1,)], 30, "the old runs to go"
        )
        retention = client.app.state.retention
        wait_until(lambda: retention.last is not None, 30, "the start-up pass to end")
        after = store.read_sync(space)
        assert after.auto_vacuum == 2
        assert after.freelist_count == 0
        assert retention.last.pages_reclaimed > 60 * 40_000 // after.page_size
        assert client.get("/api/runs", params={"q": "okapi"}).json()["total"] == 1
        assert client.get("/api/runs", params={"q": "gnu"}).json()["total"] == 0
        store.write_sync(
            lambda db: db.execute("INSERT INTO runs_fts(runs_fts) VALUES('integrity-check')")
        )
    assert db_path.stat().st_size < 60 * 40_000  # the file itself shrank


def test_reclaim_shrinks_an_incremental_file(tmp_path):
    path = tmp_path / "a.db"
    old_file(path)
    store = Store(path)
    store.maintain_sync(lambda db: db.conn.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM"))
    for i in range(20):
        seed(store, f"old-{i}", OLD + i, big=50_000)
    full = store.read_sync(space)
    run_pass(store)
    after = store.read_sync(space)
    assert after.freelist_count == 0
    assert after.page_count < full.page_count - 20 * 50_000 // full.page_size
    assert store.maintain_sync(reclaim) == 0  # nothing left to give back
    store.close()


# --- pins ---------------------------------------------------------------------------------


def test_pin_api_roles_and_errors(client, app, keys, settings):
    store: Store = app.state.store
    seed(store, "r1", NEW)
    r = client.post("/api/runs/r1/pin")
    assert r.status_code == 200 and r.json()["pinned"] is True
    first = r.json()["pinned_at"]
    assert client.post("/api/runs/r1/pin").json()["pinned_at"] == first  # pinned once
    assert client.get("/api/runs/r1").json()["run"]["pinned_at"] == first
    assert client.post("/api/runs/nope/pin").status_code == 404
    assert client.delete("/api/runs/nope/pin").status_code == 404
    assert client.post("/api/evals/999/pin").status_code == 404
    assert client.post(f"/api/evals/{2**70}/pin").status_code == 400
    client.post("/api/evals", json={"run_id": "r1", "metric": "score", "value": 1})
    [(eval_id,)] = sql(store, "SELECT id FROM evaluations")
    body = client.post(f"/api/evals/{eval_id}/pin").json()
    assert body["id"] == eval_id and body["run_id"] == "r1" and body["pinned"] is True
    assert client.delete(f"/api/evals/{eval_id}/pin").json()["pinned"] is False
    for role, status in (("viewer", 403), ("member", 200)):
        client.headers["X-API-Key"] = keys[role]
        assert client.post("/api/runs/r1/pin").status_code == status, role
        assert client.delete(f"/api/evals/{eval_id}/pin").status_code == status, role
    client.headers["X-API-Key"] = ""
    assert client.post("/api/runs/r1/pin").status_code == 401


def test_pin_forms_work_with_and_without_htmx(page_client, app):
    store: Store = app.state.store
    seed(store, "r1", NEW)
    page = BeautifulSoup(page_client.get("/runs/r1").text, "html.parser")
    form = page.select_one("#run-pin form")
    assert form["action"] == "/runs/r1/pin" and form.button.text == "Pin"
    r = page_client.post(
        "/runs/r1/pin", data={"_csrf_token": csrf(page_client)}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/runs/r1"
    page = BeautifulSoup(page_client.get("/runs/r1").text, "html.parser")
    assert page.select_one("#run-pin .status").text == "Pinned"
    assert page.select_one("#run-pin form")["action"] == "/runs/r1/unpin"
    r = page_client.post(
        "/runs/r1/unpin",
        data={"_csrf_token": csrf(page_client)},
        headers={"HX-Request": "true"},
    )
    fragment = BeautifulSoup(r.text, "html.parser")
    assert r.status_code == 200 and fragment.select_one("#run-pin button").text == "Pin"
    assert sql(store, "SELECT pinned_at FROM runs") == [(None,)]
    # Without a CSRF token a cookie session cannot pin.
    assert page_client.post("/runs/r1/pin", data={}).status_code == 403

    # An evaluation is pinned from the evals list.
    page_client.post("/runs/r1/evals", data={"score": "4", "_csrf_token": csrf(page_client)})
    [(eval_id,)] = sql(store, "SELECT id FROM evaluations")
    cell = BeautifulSoup(page_client.get("/evals").text, "html.parser").select_one(
        f"#eval-pin-{eval_id}"
    )
    assert cell.form["action"] == f"/evals/{eval_id}/pin"
    r = page_client.post(
        f"/evals/{eval_id}/pin", data={"_csrf_token": csrf(page_client)}, follow_redirects=False
    )
    assert r.status_code == 303
    assert sql(store, "SELECT pinned_at IS NOT NULL FROM evaluations") == [(1,)]


def test_viewers_see_a_pin_but_no_button(app, keys):
    from litestar.testing import TestClient

    with TestClient(app) as c:
        login(c, keys["admin"])
        seed(app.state.store, "r1", NEW)
        c.post("/runs/r1/pin", data={"_csrf_token": csrf(c)})
    with TestClient(app) as c:
        login(c, keys["viewer"])
        page = BeautifulSoup(c.get("/runs/r1").text, "html.parser")
        assert page.select_one("#run-pin .status").text == "Pinned"
        assert page.select_one("#run-pin form") is None
        assert c.post("/runs/r1/unpin", data={"_csrf_token": csrf(c)}).status_code == 403


def test_the_run_page_says_when_runs_are_deleted(settings, keys):
    settings.retention_days = 7
    with api_client(settings, keys["admin"]) as c:
        seed(c.app.state.store, "r1", NEW)
        note = BeautifulSoup(c.get("/runs/r1").text, "html.parser").select_one("#run-pin .muted")
        assert note.text == "Deleted 7 days after it ends, unless pinned."
        assert json.loads(c.post("/api/runs/r1/pin").text)["pinned"] is True
