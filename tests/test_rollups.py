"""Rollups (migration 0013) stay equal to a full recomputation, and the dashboards read the same.

A property test drives random inserts, updates (status, tokens, cost,
latency, model, session, start time), deletes and evaluations through the
store and compares every rollup table with the same aggregates recomputed
from ``runs`` and ``evaluations``. OTLP runs go through the real app. The
dashboards are compared with the previous implementation, a scan of every
run in the window (``tests/dashboard_scan.py``), on one seeded database; the
recomputation is in ``tests/rollup_recompute.py``.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import pytest
from bs4 import BeautifulSoup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.dashboard.charts import RANGES, breakdown, dashboard_charts, eval_charts
from app.sessions.queries import session_models
from app.store import Store
from app.store.rollups import histogram_percentile
from app.store.runs import totals
from tests import dashboard_scan
from tests.otlp_requests import agent_and_chat, post
from tests.rollup_recompute import TABLES, assert_rollups_match

pytestmark = pytest.mark.both_backends

NOW = time.time()
HOUR = 3600
MODELS = [None, "", "mistral-small-latest", "smollm2-135m"]
SESSIONS = [None, "", "exp-a", "exp-b"]
STATUSES = ["queued", "running", "succeeded", "failed", "interrupted"]

# --- the property test --------------------------------------------------------------------

run_fields = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "session_id": st.sampled_from(SESSIONS),
        "status": st.sampled_from(STATUSES),
        "started_at": st.floats(NOW - 100 * 86400, NOW).map(round),
        "input_tokens": st.one_of(st.none(), st.integers(0, 10**6)),
        "output_tokens": st.integers(0, 10**5),
        "cost_usd": st.one_of(st.none(), st.floats(0, 5)),
        "extra_cost_usd": st.floats(0, 1),
        "cost_status": st.sampled_from([None, "free", "priced", "unpriced", "partial"]),
        "usage_unknown_calls": st.integers(0, 2),
        "latency_ms": st.one_of(st.none(), st.floats(-5, 1e5), st.just(0.0)),
    }
)
operation = st.one_of(
    st.tuples(st.just("insert"), run_fields),
    # Which columns an update sets (bits in run_fields' order); half of them keep the run's
    # hour, model and session (bits 0, 1, 3), as the recorder's token and cost updates do.
    st.tuples(
        st.just("update"),
        st.integers(0, 30),
        run_fields,
        st.one_of(
            st.integers(1, 2**11 - 1),
            st.integers(1, 2**11 - 1).map(lambda bits: bits & ~0b1011 or 0b100),
        ),
    ),
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(
        st.just("evaluate"),
        st.integers(0, 30),
        st.sampled_from(["score", "thumbs", "regex"]),
        st.one_of(st.none(), st.floats(0, 5)),
        st.sampled_from([None, 0, 1]),
        st.floats(NOW - 100 * 86400, NOW),
    ),
    st.tuples(st.just("unevaluate"), st.integers(0, 30)),
    st.tuples(st.just("tick"), st.integers(0, 30)),
)


def apply(db: Any, op: tuple) -> None:
    """One write, as a writer would do it (one statement, triggers fire in its transaction)."""
    ids = [r[0] for r in db.execute("SELECT id FROM runs ORDER BY rowid").fetchall()]
    kind = op[0]
    if kind == "insert":
        db.table("runs").insert({"id": f"r{len(ids)}-{random.random()}", **op[1]})
        return
    if not ids:
        return
    run_id = ids[op[1] % len(ids)]
    if kind == "update":
        # A subset of columns changes at once, as the recorder's updates do.
        columns = [c for bit, c in enumerate(op[2]) if op[3] & (1 << bit)]
        sets = ", ".join(f"{c} = ?" for c in columns)
        db.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*(op[2][c] for c in columns), run_id])
    elif kind == "delete":
        db.execute("DELETE FROM evaluations WHERE run_id = ?", [run_id])
        db.execute("DELETE FROM runs WHERE id = ?", [run_id])
    elif kind == "evaluate":
        _, _, metric, value, passed, at = op
        db.table("evaluations").insert(
            {
                "run_id": run_id,
                "metric": metric,
                "value": value,
                "passed": passed,
                "source": "api",
                "created_at": at,
            }  # fmt: skip
        )
    elif kind == "unevaluate":
        db.execute(
            "DELETE FROM evaluations WHERE id = (SELECT min(id) FROM evaluations WHERE run_id = ?)",
            [run_id],
        )
    elif kind == "tick":  # what the recorder does on every event: must not touch a rollup
        db.execute("UPDATE runs SET last_seq = last_seq + 1 WHERE id = ?", [run_id])


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory):
    store = Store(tmp_path_factory.mktemp("rollups") / "rollups.db")
    yield store
    store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation, max_size=40))
def test_rollups_equal_a_recomputation_after_any_writes(shared_store, ops):
    def run_all(db: Any) -> None:
        # Deleting what the last example left is part of the test: rollups must empty too.
        db.execute("DELETE FROM evaluations")
        db.execute("DELETE FROM runs")
        for op in ops:
            apply(db, op)

    shared_store.write_sync(run_all)
    shared_store.read_sync(assert_rollups_match)


@pytest.mark.sqlite_only
def test_an_update_of_last_seq_fires_no_rollup_trigger(db):
    def write(store_db: Any) -> int:
        store_db.table("runs").insert(
            {"id": "x", "status": "running", "started_at": NOW, "model": "m"}
        )
        before = store_db.conn.total_changes
        store_db.execute("UPDATE runs SET last_seq = 7 WHERE id = 'x'")
        return int(store_db.conn.total_changes - before)

    # total_changes counts rows changed by triggers too: only the run row itself changed.
    assert db.write_sync(write) == 1


def test_rollups_follow_otlp_runs(client, settings):
    for trace in range(1, 4):
        request = agent_and_chat(trace)
        assert post(client, request, "protobuf").status_code == 200
    store = Store(settings.db_path, url=settings.database_url)  # the studio's own database
    try:
        one = "SELECT (SELECT count(*) FROM runs), (SELECT sum(runs) FROM rollup_runs_day)"
        assert tuple(store.read_sync(lambda db: db.execute(one).fetchone())) == (3, 3)
        store.read_sync(assert_rollups_match)
    finally:
        store.close()


# --- the dashboards read what the scan read -----------------------------------------------


def seed(db: Any, count: int, spread_s: float, rng: random.Random) -> None:
    rows = []
    for i in range(count):
        status = rng.choice(["succeeded"] * 8 + ["failed", "interrupted", "running", "queued"])
        rows.append(
            {
                "id": f"run-{i}",
                "session_id": rng.choice(SESSIONS),
                "status": status,
                "model": rng.choice(MODELS),
                "started_at": NOW - rng.uniform(0, spread_s),
                "latency_ms": None if status in ("running", "queued") else rng.uniform(50, 9000),
                "input_tokens": rng.randint(0, 3000),
                "output_tokens": rng.randint(0, 800),
                "cost_usd": rng.uniform(0, 0.01),
                "cost_status": rng.choice(["priced", "free", "unpriced", "partial"]),
                "usage_unknown_calls": rng.choice([0, 0, 0, 1]),
                "extra_cost_usd": rng.choice([0.0, 0.002]),
            }
        )
    db.table("runs").insert_all(rows)
    evals = []
    for _ in range(count // 2):
        run = rows[rng.randrange(count)]
        metric = rng.choice(["score", "exact_match", "latency_ms", "note"])
        evals.append(
            {
                "run_id": run["id"],
                "metric": metric,
                "value": None if metric == "note" else rng.uniform(0, 5),
                "passed": rng.choice([None, 0, 1]),
                "source": "api",
                "created_at": max(run["started_at"], NOW - rng.uniform(0, spread_s)),
            }
        )
    db.table("evaluations").insert_all(evals)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    store = Store(tmp_path_factory.mktemp("seeded") / "seeded.db")
    store.write_sync(seed, 3000, 100 * 86400, random.Random(15))
    yield store
    store.close()


def _values(charts: dict[str, Any]) -> dict[tuple[str, str], list]:
    return {(c["id"], s["name"]): s["values"] for c in charts["charts"] for s in c["series"]}


def _approx(values: list, rel: float = 1e-9) -> list:
    return [None if v is None else pytest.approx(v, rel=rel, abs=1e-9) for v in values]


def _same(value: Any) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("range_key", list(RANGES))
def test_dashboard_charts_read_what_the_scan_read(seeded, range_key):
    new = seeded.read_sync(dashboard_charts, range_key, NOW)
    old = seeded.read_sync(dashboard_scan.dashboard_charts, range_key, NOW)
    new_values, old_values = _values(new), _values(old)
    assert new_values.keys() == old_values.keys()
    for key, values in old_values.items():
        # Percentiles come from histogram buckets 2^(1/16) apart: within 4.5 %.
        rel = 0.045 if key[0] == "latency" else 1e-9
        assert new_values[key] == _approx(values, rel), key
    for a, b in zip(new["charts"], old["charts"], strict=True):
        assert (a["note"], a["empty"], a["total_text"]) == (b["note"], b["empty"], b["total_text"])
        if a["id"] != "latency":
            assert (a["y_max"], a["ticks"]) == (b["y_max"], b["ticks"])
            assert [s["texts"] for s in a["series"]] == [s["texts"] for s in b["series"]]


def test_kpis_read_what_the_scan_read(seeded):
    new, old = seeded.read_sync(totals), seeded.read_sync(dashboard_scan.totals)
    assert new.keys() == old.keys()
    for key, value in old.items():
        assert new[key] == _same(value), key


@pytest.mark.parametrize("range_key", list(RANGES))
@pytest.mark.parametrize(
    ("model", "session"), [(None, None), ("smollm2-135m", None), (None, "exp-a"), ("", "exp-b")]
)
def test_eval_charts_read_what_the_scan_read(seeded, range_key, model, session):
    new = seeded.read_sync(eval_charts, range_key, model or None, session or None, NOW)
    old = seeded.read_sync(dashboard_scan.eval_charts, range_key, model, session, NOW)
    success = {s["name"]: s["values"] for s in new["success"]["series"]}
    assert success["runs succeeded"] == _approx(old["runs"])
    assert success["evaluations passed"] == _approx(old["evals"])
    assert {m["title"]: m["series"][0]["values"] for m in new["metrics"]} == {
        metric: _approx(means) for metric, means in old["means"].items()
    }


@pytest.mark.parametrize("range_key", list(RANGES))
@pytest.mark.parametrize("by", ["model", "session"])
def test_breakdowns_read_what_the_scan_read(seeded, range_key, by):
    new = {g["g"]: g for g in seeded.read_sync(breakdown, by, range_key, NOW)}
    old = {g["g"]: g for g in seeded.read_sync(dashboard_scan.breakdown, by, range_key, NOW)}
    assert new.keys() == old.keys()
    for name, group in old.items():
        for key in ("runs", "ok", "ended", "latency", "cost", "success_rate", "pass_rate"):
            assert new[name][key] == _same(group[key]), (name, key)
        assert (new[name]["judged"], new[name]["passed"]) == (group["judged"], group["passed"])
        assert new[name]["metrics"].keys() == group["metrics"].keys()
        for metric, m in group["metrics"].items():
            assert new[name]["metrics"][metric]["n"] == m["n"]
            assert new[name]["metrics"][metric]["mean"] == _same(m["mean"])


@pytest.mark.parametrize("session", ["exp-a", "exp-b", "nobody"])
def test_session_models_read_what_the_scan_read(seeded, session):
    new = seeded.read_sync(session_models, session)
    old = seeded.read_sync(dashboard_scan.session_models, session)
    # The scan told a missing model ('' or NULL) apart from nothing; the rollup keeps one ''.
    by_model: dict[Any, dict[str, Any]] = {}
    for row in old:
        into = by_model.setdefault(row["model"] or None, {"runs": 0, "failed": 0, "finished": 0})
        for key in ("runs", "failed", "finished"):
            into[key] += row[key]
    assert {r["model"]: {k: r[k] for k in ("runs", "failed", "finished")} for r in new} == by_model


def test_the_dashboard_page_shows_the_rollups_numbers(client):
    """Over HTTP: runs written by any writer reach the KPIs and charts, and deleted ones leave."""
    store = client.app.state.store
    tokens = ".kpi:nth-of-type(4) .value"

    def write(db: Any) -> None:
        for i, status in enumerate(["succeeded", "failed", "running"]):
            db.table("runs").insert(
                {
                    "id": f"page-{i}",
                    "status": status,
                    "started_at": NOW - i * HOUR,
                    "model": "m",
                    "input_tokens": 1000 * (i + 1),
                    "output_tokens": 7,
                }  # fmt: skip
            )

    store.write_sync(write)
    page = BeautifulSoup(client.get("/").text, "html.parser")
    assert page.select_one("#kpi-runs").text == "3"
    assert page.select_one(tokens).text == "6,000 / 21"
    assert "3 in range" in page.select_one("#chart-runs .chart-total").text
    store.write_sync(lambda db: db.execute("DELETE FROM runs WHERE id = 'page-2'"))
    page = BeautifulSoup(client.get("/?range=24h").text, "html.parser")
    assert page.select_one("#kpi-runs").text == "2"
    assert page.select_one(tokens).text == "3,000 / 14"
    assert "2 in range" in page.select_one("#chart-runs .chart-total").text


def test_histogram_percentile_is_within_the_stated_bound():
    rng = random.Random(3)
    values = [rng.lognormvariate(7, 1.2) for _ in range(5000)]
    histogram: dict[int, tuple[int, float]] = {}
    for v in values:
        b = math.floor(16 * math.log2(v))
        n, total = histogram.get(b, (0, 0.0))
        histogram[b] = (n + 1, total + v)
    rows = [(b, n, total) for b, (n, total) in histogram.items()]
    for q in (0.5, 0.95, 0.99):
        exact = dashboard_scan.percentile(values, q)
        assert exact is not None
        assert histogram_percentile(rows, q) == pytest.approx(exact, rel=2 ** (1 / 16) - 1)
    assert histogram_percentile([], 0.5) is None
    assert histogram_percentile([(-1000, 3, 0.0)], 0.95) == 0.0
    # One value in a bucket is read back exactly, as the KPIs and tooltips show it.
    assert histogram_percentile([(165, 1, 1290.4)], 0.5) == 1290.4


def test_the_migration_rolls_up_runs_recorded_before_it(tmp_path):
    """Runs and evaluations written before migration 0013 are in the rollups once it ran."""
    path = tmp_path / "old.db"
    store = Store(path)

    def before_0013(db: Any) -> None:
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'rollup_%'"
        ).fetchall():
            db.execute(f"DROP TRIGGER {name}")
        for table in TABLES:
            db.execute(f"DROP TABLE {table}")
        db.execute("DELETE FROM _migrations WHERE name = '0013_rollups'")
        seed(db, 500, 30 * 86400, random.Random(5))

    store.write_sync(before_0013)
    store.close()
    store = Store(path)
    try:
        assert "0013_rollups" in store.migrations_applied
        store.read_sync(assert_rollups_match)
        assert store.read_sync(totals)["runs"] == 500
    finally:
        store.close()
