"""Runs list filters and search: the query layer, the API, the htmx page, and index use."""

import datetime as dt
import re

import pytest
from bs4 import BeautifulSoup

from app.core.errors import InputError
from app.runs.filters import (
    RunFilter,
    _matching,
    count_filtered,
    filtered_runs,
    fts_query,
    parse_filters,
)
from app.store.runs import create_run

pytestmark = pytest.mark.both_backends

DAY = 86400.0
T0 = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC).timestamp()

SEED = [
    # id, status, model, session, prompt, response, days after T0
    (
        "r1",
        "succeeded",
        "mistral-small-latest",
        "exp-a",
        "Capital of France?",
        "Paris, of course.",
        0,
    ),
    ("r2", "failed", "mistral-small-latest", "exp-a", "Summarise the W&B run", None, 1),
    ("r3", "succeeded", "smollm2-135m", "exp-b", "Name a café in Zürich", "Café Sprüngli", 2),
    (
        "r4",
        "interrupted",
        "mistral-large-latest",
        None,
        "Write a poem about rivers",
        "Rivers run",
        3,
    ),
    ("r5", "succeeded", "smollm2-135m", None, "What is 2+2?", "4 (four)", 5),
]


def seed(db):
    def write(conn):
        for run_id, status, model, session, prompt, response, days in SEED:
            create_run(
                conn,
                {
                    "id": run_id,
                    "status": status,
                    "model": model,
                    "session_id": session,
                    "prompt": prompt,
                    "started_at": T0 + days * DAY,
                },
            )
            # The response arrives later, through an update, as the recorder writes it.
            conn.execute("update runs set response = ? where id = ?", [response, run_id])

    db.write_sync(write)


def ids(db, **filters):
    f = RunFilter(**filters)
    rows = db.read_sync(filtered_runs, f)
    assert db.read_sync(count_filtered, f) == (len(rows), False)
    return [r["id"] for r in rows]


def test_each_filter(db):
    seed(db)
    assert ids(db) == ["r5", "r4", "r3", "r2", "r1"]  # newest first
    assert ids(db, status="succeeded") == ["r5", "r3", "r1"]
    assert ids(db, model="smollm2-135m") == ["r5", "r3"]
    assert ids(db, session="exp-a") == ["r2", "r1"]
    assert ids(db, date_from="2026-03-11", date_to="2026-03-13") == ["r4", "r3", "r2"]
    assert ids(db, date_to="2026-03-10") == ["r1"]  # the end day is included
    assert ids(db, status="succeeded", model="smollm2-135m", session="exp-b") == ["r3"]


def test_text_search_in_prompt_and_response(db):
    seed(db)
    assert ids(db, q="paris") == ["r1"]  # in the response only
    assert ids(db, q="capital") == ["r1"]  # in the prompt
    assert ids(db, q="cafe zurich") == ["r3"]  # diacritics folded, every word required
    assert ids(db, q="riv") == ["r4"]  # word prefixes match
    assert ids(db, q="W&B") == ["r2"]
    assert ids(db, q='"AND" OR NEAR(*') == []  # FTS syntax is just text
    assert ids(db, q="2+2") == ["r5"]
    assert ids(db, q="+") == ["r5"]  # no words at all: a plain substring search
    assert ids(db, q="paris", status="failed") == []
    assert ids(db, q="café", session="exp-b") == ["r3"]
    assert ids(db, q="r", date_from="2026-03-11") == ["r4", "r2"]  # "rivers", "run"


def test_parse_filters_validates():
    f = parse_filters(
        {"status": "failed", "q": " hi ", "from": "2026-01-01", "to": "2026-01-31", "model": None}
    )
    assert f == RunFilter(status="failed", q="hi", date_from="2026-01-01", date_to="2026-01-31")
    assert f.query_string() == "status=failed&q=hi&from=2026-01-01&to=2026-01-31&"
    assert not parse_filters({}).active
    for bad, message in [
        ({"status": "bogus"}, "status must be one of"),
        ({"from": "yesterday"}, "from must be a date"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "ends before it starts"),
        ({"q": "x" * 201}, "longer than 200"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_filters(bad)
    assert fts_query('say "hi" now*') == '"say"* "hi"* "now"*'


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"status": "failed"},
        {"model": "m"},
        {"session": "s"},
        {"date_from": "2026-01-01", "date_to": "2026-02-01"},
        {"q": "paris"},
        {"q": "paris", "status": "failed"},
        {"q": "paris", "session": "s"},
        {"q": "paris", "date_from": "2026-01-01"},
    ],
)
@pytest.mark.sqlite_only
def test_every_filter_pages_through_an_index_without_sorting(db, filters):
    source, args, order = _matching(RunFilter(**filters))
    sql = f"select runs.rowid from {source} order by {order} limit 50 offset 100"
    plan = " | ".join(
        r[3]
        for r in db.read_sync(
            lambda conn: conn.execute(f"explain query plan {sql}", args).fetchall()
        )
    )
    assert "USING COVERING INDEX" in plan or "VIRTUAL TABLE INDEX" in plan, plan
    assert re.search(r"SCAN runs(?!_fts)(?! USING)", plan) is None, plan  # no table scan
    assert "TEMP B-TREE" not in plan, plan  # the index gives the order: no sort of all matches


def test_counts_stop_at_the_cap(db):
    seed(db)
    assert db.read_sync(count_filtered, RunFilter(status="succeeded"), 2) == (2, True)
    assert db.read_sync(count_filtered, RunFilter(status="succeeded"), 3) == (3, False)
    assert db.read_sync(count_filtered, RunFilter(), 2) == (5, False)  # all runs: exact


def test_api_filters(client):
    seed(client.app.state.store)
    body = client.get("/api/runs", params={"status": "succeeded", "model": "smollm2-135m"}).json()
    assert [r["id"] for r in body["runs"]] == ["r5", "r3"] and body["total"] == 2
    assert body["filters"] == {"status": "succeeded", "model": "smollm2-135m"}
    body = client.get("/api/runs", params={"q": "café", "from": "2026-03-12"}).json()
    assert [r["id"] for r in body["runs"]] == ["r3"]
    r = client.get("/api/runs", params={"status": "nope"})
    assert r.status_code == 400 and "status must be one of" in r.json()["detail"]
    assert client.get("/api/runs", params={"to": "31/01/2026"}).status_code == 400


def test_htmx_filtering_swaps_only_the_table(page_client):
    client = page_client
    seed(client.app.state.store)
    full = BeautifulSoup(client.get("/runs?session=exp-a").text, "html.parser")
    form = full.select_one("form#runs-filters")
    assert form["hx-get"] == "/runs" and form["hx-target"] == "#runs-table"
    assert form.select_one("#f-session")["value"] == "exp-a"
    assert {o["value"] for o in full.select("#f-sessions option")} == {"exp-a", "exp-b"}
    assert len(full.select("#runs-table tbody tr")) == 2

    r = client.get("/runs?q=rivers&status=interrupted", headers={"HX-Request": "true"})
    fragment = BeautifulSoup(r.text, "html.parser")
    assert fragment.select_one("html") is None and fragment.select_one("form") is None
    assert [tr["id"] for tr in fragment.select("tbody tr")] == ["run-row-r4"]
    assert fragment.select_one("#runs-count").text.strip() == "1 matching run"
    # A history restore gets the whole page, not the fragment.
    r = client.get(
        "/runs?q=rivers", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in r.text
    empty = BeautifulSoup(
        client.get("/runs?q=zebra", headers={"HX-Request": "true"}).text, "html.parser"
    )
    assert "No runs match" in empty.select_one(".empty").text
    assert client.get("/runs?from=garbage").status_code == 400


def test_pager_keeps_the_filters(page_client):
    client = page_client
    store = client.app.state.store

    def many(conn):
        for i in range(60):
            create_run(
                conn,
                {
                    "id": f"m{i:02d}",
                    "status": "failed",
                    "model": "m",
                    "prompt": f"p{i}",
                    "started_at": T0 + i,
                },
            )

    store.write_sync(many)
    page = BeautifulSoup(client.get("/runs?status=failed").text, "html.parser")
    older = page.select_one(".pager a")
    assert older["hx-get"] == "/runs?status=failed&page=2"
    second = BeautifulSoup(
        client.get(older["hx-get"], headers={"HX-Request": "true"}).text, "html.parser"
    )
    assert len(second.select("tbody tr")) == 10
