"""``agentop copy-db`` and ``agentop migrate``: a real SQLite studio moved to a real PostgreSQL.

The studio is filled through the app and the store's own functions (native
runs streamed from the fake Mistral server, a recorded run with its tokens
compacted and memory snapshots as deltas, OTLP traces with packed span cells
and headless event payloads, evaluations, sessions, datasets, experiments,
keys, alerts, prices, exports), copied, and then read back through the API
and the store on both databases: everything must read the same.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.cli import main
from app.core.settings import Settings
from app.store import Store
from app.store.event_log import read_events
from tests.conftest import MISTRAL_MODEL, agent_config, api_client, wait_for_run
from tests.fake_mistral import Reply
from tests.odd_rows import seed_odd_data
from tests.otlp_requests import agent_and_chat, post
from tests.rollup_recompute import TABLES as ROLLUPS
from tests.rollup_recompute import _close, assert_rollups_match
from tests.seed_runs import evaluate, seed_all
from tests.test_compact_log import a_run, record

_NAMES = itertools.count(1)
# Tables a studio may leave empty here: runtime state copy-db skips, and what needs a
# live integration (a fine-tune job, a registered model) or a login.
MAY_BE_EMPTY = {
    "processes",
    "storage_probe",
    "finetune_jobs",
    "registered_models",
    "sessions",
    "studio_secrets",  # SQLite keeps its secret in the data dir
}


@pytest.fixture
def target(postgres_template: tuple[str, str]) -> str:
    """A new, empty PostgreSQL database (not migrated: copy-db migrates it)."""
    url, _ = postgres_template
    name = f"copy{next(_NAMES)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    return f"{url.rsplit('/', 1)[0]}/{name}"


class Approx:
    """Rows of totals: recomputed on PostgreSQL, so a float sum may differ in its last bits."""

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Approx)
            and len(self.rows) == len(other.rows)
            and all(
                len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
                for a, b in zip(self.rows, other.rows, strict=True)
            )
        )

    def __repr__(self) -> str:
        return repr(self.rows)


def _sql(store: Store, statement: str, params: list[Any] | None = None) -> Any:
    return store.write_sync(lambda db: db.execute(statement, params or []).rowcount)


def _fill_by_app(client: Any, fake_mistral: Any) -> None:
    """Native runs streamed from the fake Mistral, in sessions; OTLP traces; evaluations."""
    fake_mistral.add(
        Reply(
            text="Let me speak.",
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "hi"}}],
        ),
        Reply(text="I could not speak. Ünïcode ✓ answer", usage=(40, 5)),
        Reply(text="The capital of Peru is Lima, a coastal city.", usage=(12, 9)),
    )
    ids = []
    for prompt, session in (("say hi", "copy session"), ("capital of Peru?", None)):
        body = {
            "prompt": prompt,
            "model": MISTRAL_MODEL,
            **({"session": session} if session else {}),
        }
        r = client.post("/api/runs", json=body)
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["run_id"])
        assert wait_for_run(client, ids[-1])["run"]["status"] == "succeeded"
    for trace in range(1, 4):
        question = [{"role": "user", "parts": [{"type": "text", "content": "otlp question " * 20}]}]
        answer = [{"role": "assistant", "parts": [{"type": "text", "content": "otlp answer"}]}]
        request = agent_and_chat(
            trace,
            gen_ai__input__messages=json.dumps(question),
            gen_ai__output__messages=json.dumps(answer),
        )
        assert post(client, request, "protobuf").status_code == 200
    r = client.post(
        "/api/evals", json={"run_id": ids[0], "metric": "thumbs", "value": 1.0, "label": "up"}
    )
    assert r.status_code == 201, r.text


def _fill_by_store(store: Store) -> None:
    """A recorded run (compacted tokens, snapshot deltas), seeded runs, and a row in every
    other table, written as the studio writes them."""
    record(store, "compact-run", a_run(200))
    seed_all(store)
    evaluate(store, "compact-run", "score", value=0.75, passed=1)
    now = time.time()

    def rows(db: Any) -> None:
        dataset = db["datasets"].insert({"name": "ds", "created_at": now, "item_count": 1}).last_pk
        item = (
            db["dataset_items"]
            .insert(
                {
                    "dataset_id": dataset,
                    "idx": 0,
                    "input": "2+2?",
                    "metadata": json.dumps({"run_id": "good"}),
                }
            )
            .last_pk
        )
        experiment = (
            db["experiments"]
            .insert({"name": "e", "dataset_id": dataset, "status": "succeeded", "created_at": now})
            .last_pk
        )
        db["experiment_items"].insert(
            {
                "experiment_id": experiment,
                "item_id": item,
                "idx": 0,
                "run_id": "low",
                "status": "succeeded",
            }
        )
        evaluation = {"run_id": "low", "metric": "exact", "value": 0.0, "passed": 0}
        db["evaluations"].insert(
            {**evaluation, "source": "experiment", "experiment_id": experiment, "created_at": now}
        )
        rule = (
            db["alert_rules"]
            .insert({"name": "r", "kind": "threshold", "threshold_usd": 0.01, "created_at": now})
            .last_pk
        )
        alert = (
            db["alerts"]
            .insert(
                {
                    "rule_id": rule,
                    "fingerprint": "f1",
                    "run_id": "good",
                    "value_usd": 0.5,
                    "created_at": now,
                }
            )
            .last_pk
        )
        db["alert_deliveries"].insert({"alert_id": alert, "channel": "webhook", "status": "sent"})
        db["price_overrides"].insert(
            {"vendor": "mistral", "item": MISTRAL_MODEL, "field": "input", "value": 1e-7,
             "effective_from": "2026-01-01", "created_at": now}
        )  # fmt: skip
        db["exports"].insert(
            {"kind": "finetune_jsonl", "status": "succeeded", "params": "{}", "created_at": now}
        )
        db["integration_errors"].insert({"integration": "wandb", "error": "offline", "at": now})
        db["diffs"].insert(
            {"id": "d1", "run_a": "good", "run_b": "low", "kind": "replay", "status": "done",
             "created_at": now}
        )  # fmt: skip
        db["otlp_logs"].insert({"body": "log line", "received_at": now, "run_id": "good"})
        db["otlp_metrics"].insert({"name": "tokens", "received_at": now, "data": "{}"})

    store.write_sync(rows)


@pytest.fixture
def studio(client: Any, fake_mistral: Any, settings: Settings) -> Settings:
    """A SQLite studio with something in every table copy-db copies."""
    _fill_by_app(client, fake_mistral)
    store = Store(settings.db_path)
    try:
        _fill_by_store(store)
    finally:
        store.close()
    with sqlite3.connect(settings.db_path) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        empty = {
            t
            for t in tables
            if not t.startswith(("sqlite_", "runs_fts", "_"))
            and conn.execute(f'select count(*) from "{t}"').fetchone()[0] == 0
        }
        assert empty <= MAY_BE_EMPTY, empty
        # The shapes this test is about are really there.
        blobs = conn.execute("select count(*) from events where typeof(payload) = 'blob'")
        assert blobs.fetchone()[0] > 0
        assert (
            conn.execute("select count(*) from spans where typeof(attributes) = 'blob'").fetchone()[
                0
            ]
            > 0
        )
        assert conn.execute("select count(*) from events where type = 'deltas'").fetchone()[0] > 0
    return settings


def copy_db(settings: Settings, url: str, *extra: str) -> int:
    return main(["copy-db", "--to", url, "--data-dir", str(settings.data_dir), *extra])


def _views(settings: Settings, key: str) -> dict[str, Any]:
    """What the studio serves, through the API and the store, on the settings' database."""
    out: dict[str, Any] = {}
    with api_client(settings, key) as client:
        runs = client.get("/api/runs", params={"limit": 500}).json()
        out["runs"] = runs
        for run in runs["runs"]:
            rid = run["id"]
            for path in (f"/api/runs/{rid}", f"/api/runs/{rid}/spans", f"/api/runs/{rid}/memory"):
                r = client.get(path)
                out[path] = (r.status_code, r.json())
        for path in (
            "/api/sessions",
            "/api/evals",
            "/api/evals/summary",
            "/api/datasets",
            "/api/experiments",
        ):
            r = client.get(path)
            out[path] = (r.status_code, r.json())
        for words in ("capital", "otlp", "Mistral", "nothing-matches"):
            r = client.get("/api/runs", params={"q": words})
            # As a set: ranking is the search's own (bm25 on SQLite, ts_rank on PostgreSQL).
            out[f"q={words}"] = sorted(run["id"] for run in r.json()["runs"])
        out["sessions"] = client.get("/api/sessions").json()
    store = Store(settings.db_path, url=settings.database_url)
    try:
        for run in runs["runs"]:
            out[f"events {run['id']}"] = store.read_sync(read_events, run["id"], 0)
        # Read from the tables: /api/alerts and /api/exports do not answer on PostgreSQL yet
        # (app.core.outbound's ``glob``), which is no part of copying.
        for table in ("alert_rules", "alerts", "alert_deliveries", "exports", "integration_errors"):
            out[table] = store.read_sync(
                lambda db, t=table: [dict(r) for r in db.query(f"select * from {t} order by id")]
            )
        for table in [*ROLLUPS, "run_sessions"]:
            out[table] = Approx(
                store.read_sync(
                    lambda db, t=table: sorted(tuple(r) for r in db.execute(f"select * from {t}"))
                )
            )
    finally:
        store.close()
    return out


def test_a_studio_reads_the_same_after_copy_db(studio: Settings, target: str, keys, capsys) -> None:
    assert copy_db(studio, target) == 0
    out = capsys.readouterr().out
    assert "all counts match" in out and "events:" in out, out
    on_pg = Settings(data_dir=studio.data_dir, agent_config=agent_config(), database_url=target)
    before = _views(studio, keys["admin"])
    after = _views(on_pg, keys["admin"])
    assert before.keys() == after.keys()
    for name in before:
        assert after[name] == before[name], name
    assert before["q=capital"] and before["q=otlp"]
    # The rollups PostgreSQL recomputed are what a recomputation from the runs gives.
    store = Store(studio.db_path, url=target)
    try:
        store.read_sync(assert_rollups_match)
        assert (
            store.read_sync(
                lambda db: db.execute(
                    "select count(*) from events where payload like '{%'"
                ).fetchone()
            )[0]
            == store.read_sync(lambda db: db.execute("select count(*) from events").fetchone())[0]
        )
    finally:
        store.close()
    # Newest recorded first, as on SQLite: runs.rowid followed SQLite's order.
    assert [r["id"] for r in after["runs"]["runs"]] == [r["id"] for r in before["runs"]["runs"]]


def test_new_rows_on_postgresql_get_fresh_ids(studio: Settings, target: str, keys) -> None:
    assert copy_db(studio, target) == 0
    store = Store(studio.db_path, url=target)
    try:
        most = store.read_sync(
            lambda db: db.execute("select max(id) from evaluations").fetchone()[0]
        )
        evaluate(store, "good", "later", value=1.0)  # an identity id after the copied ones
        newest = store.read_sync(
            lambda db: db.execute("select max(id) from evaluations").fetchone()[0]
        )
        assert newest == most + 1
    finally:
        store.close()


def test_odd_rows_copy_and_read(tmp_path: Path, target: str, capsys) -> None:
    settings = Settings(data_dir=tmp_path / "odd", agent_config=agent_config())
    store = Store(settings.db_path)
    try:
        ids = seed_odd_data(store)
        # A start in the year 10^292: SQLite's rollup period overflows into a float, which
        # PostgreSQL's bigint period cannot hold (reported); the rest is what is tested here.
        _sql(store, "update runs set started_at = 1e9 where started_at > 1e12")
        _sql(store, "update evaluations set created_at = 1e9 where created_at > 1e12")
        # Two huge finite values: SQLite's sum is inf, PostgreSQL's float8 raises (reported).
        _sql(store, "update evaluations set value = 1.0 where abs(value) > 1e300")
    finally:
        store.close()
    assert copy_db(settings, target) == 0, capsys.readouterr()
    on_pg = Store(settings.db_path, url=target)
    try:
        # NUL cannot be stored in PostgreSQL text: it reads as U+FFFD, the rest as it was.
        model = on_pg.read_sync(
            lambda db: db.execute("select model from runs where id = ?", [ids["odd"]]).fetchone()[0]
        )
        assert model == "a\ufffdb"
        big = on_pg.read_sync(
            lambda db: db.execute(
                "select length(prompt) from runs where id = ?", [ids["huge"]]
            ).fetchone()[0]
        )
        assert big == 1_000_000
    finally:
        on_pg.close()


# --- refusals ------------------------------------------------------------------------------


def test_refuses_a_url_that_is_not_postgresql(tmp_path: Path, capsys) -> None:
    assert main(["copy-db", "--to", "mysql://x/y", "--data-dir", str(tmp_path)]) == 2
    assert "postgresql://" in capsys.readouterr().err


def test_refuses_a_missing_studio(tmp_path: Path, capsys) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none"
    assert main(["copy-db", "--to", url, "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no studio" in err and len(err.strip().splitlines()) == 1


def test_refuses_a_target_that_holds_data(tmp_path: Path, target: str, capsys) -> None:
    settings = Settings(data_dir=tmp_path / "s", agent_config=agent_config())
    store = Store(settings.db_path)
    seed_all(store)
    store.close()
    assert copy_db(settings, target) == 0
    capsys.readouterr()
    assert copy_db(settings, target) == 2
    err = capsys.readouterr().err
    assert "already holds data" in err and "runs" in err, err


def test_a_row_postgresql_refuses_fails_the_copy_and_writes_nothing(
    tmp_path: Path, target: str, capsys
) -> None:
    settings = Settings(data_dir=tmp_path / "s", agent_config=agent_config())
    store = Store(settings.db_path)
    seed_all(store)
    # SQLite keeps text in an INTEGER column; PostgreSQL's bigint cannot.
    _sql(store, "update runs set input_tokens = 'lots' where id = 'low'")
    store.close()
    assert copy_db(settings, target) == 1
    err = capsys.readouterr().err
    assert "nothing was written" in err and "input_tokens" in err and "lots" in err, err
    with psycopg.connect(target) as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (0,)
    # Fixed at the source, the same target takes the copy.
    store = Store(settings.db_path)
    _sql(store, "update runs set input_tokens = 5 where id = 'low'")
    store.close()
    assert copy_db(settings, target) == 0


def test_refuses_while_a_server_runs_unless_forced(tmp_path: Path, target: str, capsys) -> None:
    settings = Settings(data_dir=tmp_path / "s", agent_config=agent_config())
    store = Store(settings.db_path)
    seed_all(store)
    server = {"id": "srv", "pid": 1, "host": "h", "kind": "serve", "url": "http://127.0.0.1:1",
              "started_at": time.time(), "heartbeat_at": time.time() + 60}  # fmt: skip
    store.write_sync(lambda db: db["processes"].insert(server))
    store.close()
    assert copy_db(settings, target) == 2
    assert "server is running" in capsys.readouterr().err
    assert copy_db(settings, target, "--force") == 0


def test_refuses_an_unreachable_target(tmp_path: Path, capsys) -> None:
    settings = Settings(data_dir=tmp_path / "s", agent_config=agent_config())
    Store(settings.db_path).close()
    assert copy_db(settings, "postgresql://nobody@127.0.0.1:9/none") == 2
    assert "cannot use" in capsys.readouterr().err


# --- migrate -------------------------------------------------------------------------------


def test_migrate_on_sqlite(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("AGENTOP_DATABASE_URL", raising=False)
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert "applied 0001_core" in first and "0015_retention" in first, first
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_migrate_on_postgresql(tmp_path: Path, target: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AGENTOP_DATABASE_URL", target)
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert "applied 0015_baseline" in first and "@" in first, first
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    assert "nothing to apply" in capsys.readouterr().out
