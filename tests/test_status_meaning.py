"""One meaning of "failed": interrupted runs count as failures on every page.

A session holds runs of every status; the dashboard KPI, the dashboard
chart, ``/runs?status=failed``, the session page and the evals dashboard
must all count the same failures (failed + interrupted) out of the same
ended runs.
"""

from __future__ import annotations

import re
import time

import pytest
from bs4 import BeautifulSoup
from sqlite_utils import Database

from app.store import statuses
from app.store.migrations import MIGRATIONS, apply_migrations
from app.store.migrations import m0009_failure_meaning as m0009
from app.store.runs import create_run

pytestmark = pytest.mark.both_backends

SESSION = "mixed-bag"
# status -> how many runs of the session end that way (queued/running stay active)
MIX = {"succeeded": 2, "failed": 1, "interrupted": 2, "running": 1, "queued": 1}
FAILURES = MIX["failed"] + MIX["interrupted"]
ENDED = FAILURES + MIX["succeeded"]


def seed(app) -> None:  # type: ignore[no-untyped-def]
    """Runs created queued and then moved to their status, as the recorder moves them."""
    owner = getattr(getattr(app.state, "process", None), "id", None)

    def write(db: Database) -> None:
        now = time.time()
        n = 0
        for status, count in MIX.items():
            for _ in range(count):
                n += 1
                run_id = f"mix-{n}"
                create_run(
                    db,
                    {"id": run_id, "prompt": f"task {n}", "session_id": SESSION, "started_at": now},
                )
                if owner and "owner" in db.table("runs").columns_dict:
                    # Active runs belong to this live server, so no sweep takes them.
                    db.execute("update runs set owner = ? where id = ?", [owner, run_id])
                db.execute("update runs set status = ? where id = ?", [status, run_id])

    app.state.store.write_sync(write)


def test_every_page_counts_interrupted_runs_as_failures(client):
    seed(client.app)

    # Dashboard KPI (page) and the dashboard's runs chart (its data, as the evals API serves it).
    page = BeautifulSoup(client.get("/").text, "html.parser")
    kpi = next(
        k for k in page.select("#kpis .kpi") if k.select_one(".label").text.strip() == "Failed"
    )
    assert kpi.select_one(".value").text.strip() == str(FAILURES)
    summary = client.get("/api/evals/summary").json()
    runs_chart = next(c for c in summary["runs"] if c["id"] == "runs")
    failed_series = next(s for s in runs_chart["series"] if s["name"] == "failed")
    assert sum(v or 0 for v in failed_series["values"]) == FAILURES

    # The status filter: the API's count and the rows of the page.
    listed = client.get("/api/runs", params={"status": "failed"}).json()
    assert listed["total"] == FAILURES
    assert {r["status"] for r in listed["runs"]} == {"failed", "interrupted"}
    rows = BeautifulSoup(client.get("/runs?status=failed").text, "html.parser").select(
        "tbody tr[id^='run-row-']"
    )
    assert len(rows) == FAILURES
    only = client.get("/api/runs", params={"status": "interrupted"}).json()
    assert only["total"] == MIX["interrupted"]

    # The session page and its JSON twin.
    session = client.get("/api/sessions").json()["sessions"][0]
    assert (session["name"], session["failed"], session["finished"]) == (SESSION, FAILURES, ENDED)
    assert session["failure_rate"] == FAILURES / ENDED
    detail = client.get(f"/api/sessions/{session['id']}").json()
    assert [(m["failed"], m["finished"]) for m in detail["models"]] == [(FAILURES, ENDED)]
    page = BeautifulSoup(client.get(f"/sessions/{session['id']}").text, "html.parser")
    assert page.select_one("#session-failure-rate").text.strip() == "60.0%"
    assert f"{FAILURES} of {ENDED} ended runs failed" in page.text

    # The evals dashboard: success is the complement of the same failures.
    group = next(g for g in summary["by_session"] if g["g"] == SESSION)
    assert (group["ended"] - group["ok"], group["ended"]) == (FAILURES, ENDED)
    assert group["success_rate"] == 100.0 * (ENDED - FAILURES) / ENDED
    rates = [v for v in summary["success"]["series"][0]["values"] if v is not None]
    assert rates == [100.0 * (ENDED - FAILURES) / ENDED]
    evals = BeautifulSoup(client.get("/evals").text, "html.parser")
    cells = evals.select_one("#by-session tbody tr").select("td")
    assert cells[0].text.strip() == SESSION and re.search(r"\b40%", cells[2].text)


def test_a_run_moving_between_statuses_keeps_the_session_totals_true(client):
    seed(client.app)
    store = client.app.state.store
    # The running run is interrupted, a failed one deleted: totals follow.
    store.write_sync(
        lambda db: db.execute("update runs set status = 'interrupted' where id = 'mix-6'")
    )
    store.write_sync(lambda db: db.execute("delete from runs where id = 'mix-3'"))
    session = client.get("/api/sessions").json()["sessions"][0]
    assert (session["failed"], session["finished"]) == (FAILURES, ENDED)  # +1 -1 each


def test_migration_recounts_sessions_recorded_before_it(tmp_path):
    db = Database(tmp_path / "old.db")
    db.table("_migrations").create({"name": str, "applied_at": float}, pk="name")
    for name, fn in sorted(MIGRATIONS, key=lambda item: item[0]):
        if name < "0009":
            fn(db)
            db.table("_migrations").insert({"name": name, "applied_at": 0.0})
    for n, status in enumerate(["succeeded", "interrupted", "interrupted", "failed", "running"]):
        create_run(db, {"id": f"old-{n}", "prompt": "p", "session_id": "old", "status": status})
    before = db.execute("select failed, finished from run_sessions").fetchone()
    assert tuple(before) == (1, 4)  # what the old triggers kept: interrupted runs ignored

    assert "0009_failure_meaning" in apply_migrations(db)
    assert tuple(db.execute("select failed, finished from run_sessions").fetchone()) == (3, 4)
    create_run(db, {"id": "new", "prompt": "p", "session_id": "old", "status": "interrupted"})
    assert tuple(db.execute("select failed, finished from run_sessions").fetchone()) == (4, 5)


def test_the_migration_froze_the_status_sets_it_was_written_for():
    # If statuses.py changes what counts as a failure, a new migration must follow.
    assert m0009._FAILED == statuses.sql_list(statuses.FAILED_LIKE)
    assert m0009._ENDED == statuses.sql_list(statuses.TERMINAL)
