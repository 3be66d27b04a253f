"""Exports: a Hugging Face dataset pushed to a local fake Hub, a W&B artifact in offline mode,
W&B run metrics, and a Mistral fine-tuning JSONL; through the API, the page and the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from app.core.integration_settings import IntegrationSettings
from app.core.settings import Settings
from app.exports.finetune_jsonl import ID_RE, validate_line
from app.exports.huggingface import EVALUATIONS_SCHEMA, RUNS_SCHEMA
from app.store import Store
from tests.conftest import MISTRAL_MODEL, agent_config, csrf, wait_for_run
from tests.fake_hf import FakeHub
from tests.receivers import wait_until
from tests.seed_runs import seed_all

pytestmark = pytest.mark.both_backends

FAST = IntegrationSettings(
    retry_attempts=3, retry_initial_s=0.01, retry_max_s=0.05, wandb_mode="offline"
)


@pytest.fixture
def hub():
    server = FakeHub(fail_creates=1)
    yield server
    server.stop()


@pytest.fixture
def settings(data_dir, fake_mistral, hub, monkeypatch, database_url):
    monkeypatch.setenv("WANDB_DATA_DIR", str(data_dir / "wandb-data"))
    store = Store(data_dir / "agentop.db", url=database_url)
    seed_all(store)
    store.close()
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        agent_config=agent_config(fake_mistral.url),
        integrations=FAST.model_copy(
            update={"hf_endpoint": hub.url, "hf_token": "hf_test", "hf_repo": "team/agent-runs"}
        ),
    )


def finished(client, export_id: int, timeout: float = 60) -> dict:
    return wait_until(
        lambda: (lambda e: e if e["status"] in ("succeeded", "failed") else None)(
            client.get(f"/api/exports/{export_id}").json()
        ),
        timeout,
        f"export {export_id}",
    )


def test_huggingface_parquet_export_pushed_with_a_retry(client, hub, data_dir):
    r = client.post("/api/exports", json={"kind": "huggingface", "format": "parquet"})
    assert r.status_code == 202, r.text
    export = finished(client, r.json()["export_id"])
    assert export["status"] == "succeeded", export["error"]
    result = export["result"]
    assert result["runs"] == 4 and result["evaluations"] == 4
    assert result["commit_url"].endswith("/datasets/team/agent-runs/commit/abc123")
    folder = Path(result["folder"])
    assert folder.parent == data_dir / "exports"

    runs = pq.read_table(folder / "data" / "runs.parquet")
    assert runs.schema.equals(RUNS_SCHEMA) and runs.num_rows == 4
    good = next(r for r in runs.to_pylist() if r["id"] == "good")
    assert [m["role"] for m in good["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert good["tool_call_details"][0]["name"] == "hf_list_models"
    # A message's tool calls are nested data, not JSON text (arguments stay JSON text).
    assert good["messages"][2]["tool_calls"] == [
        {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "hf_list_models", "arguments": '{"search": "mistral"}'},
        }
    ]
    assert good["messages"][1]["tool_calls"] == []
    assert good["cost_status"] == "priced" and good["input_tokens"] == 300
    evaluations = pq.read_table(folder / "data" / "evaluations.parquet")
    assert evaluations.schema.equals(EVALUATIONS_SCHEMA) and evaluations.num_rows == 4

    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in meta["configs"]} == {"runs", "evaluations"}
    assert meta["configs"][0]["data_files"] == "data/runs.parquet"
    assert "| `messages` |" in card and "mistral-small-latest | 4" in card

    repo = hub.repos["team/agent-runs"]
    assert repo["private"] is True and repo["type"] == "dataset"
    assert set(repo["files"]) == {"README.md", "data/runs.parquet", "data/evaluations.parquet"}
    assert repo["files"]["data/runs.parquet"] == (folder / "data" / "runs.parquet").read_bytes()
    assert "Bearer hf_test" in hub.tokens
    # The 503 on creating the repo was retried, and recorded.
    errors = client.get("/api/exports").json()["errors"]
    assert any(e["subject"] == f"export:{export['id']}" and "503" in e["error"] for e in errors)


def test_huggingface_jsonl_local_only(client, hub):
    r = client.post("/api/exports", json={"kind": "huggingface", "format": "jsonl", "push": False})
    export = finished(client, r.json()["export_id"])
    assert export["status"] == "succeeded" and "commit_url" not in export["result"]
    lines = (Path(export["result"]["folder"]) / "data" / "runs.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 4 and set(rows[0]) == set(RUNS_SCHEMA.names)
    good = next(row for row in rows if row["id"] == "good")
    assert good["messages"][2]["tool_calls"][0]["function"]["name"] == "hf_list_models"
    assert hub.repos == {}


def test_push_failure_is_shown(client, hub):
    hub.fail_creates = 99
    r = client.post("/api/exports", json={"kind": "huggingface"})
    export = finished(client, r.json()["export_id"])
    assert export["status"] == "failed" and "503" in export["error"]
    page = client.get("/exports").text
    assert "503" in page and "gave up" in page


def test_wandb_artifact_offline(client, data_dir, backend):
    r = client.post("/api/exports", json={"kind": "wandb"})
    export = finished(client, r.json()["export_id"])
    assert export["status"] == "succeeded", export["error"]
    result = export["result"]
    assert result["mode"] == "offline" and result["runs"] == 4
    folder = Path(result["folder"])
    if backend == "sqlite":  # a consistent snapshot: a complete SQLite database with every run
        with sqlite3.connect(folder / "agentop.db") as snap:
            assert snap.execute("pragma integrity_check").fetchone()[0] == "ok"
            assert snap.execute("select count(*) from runs").fetchone()[0] == 4
    else:  # PostgreSQL: no database file, the run files are the artifact
        assert not (folder / "agentop.db").exists() and len(list(folder.glob("runs/*"))) == 4
    run_json = json.loads((folder / "runs" / "good.json").read_text())
    assert run_json["messages"][1]["content"] == "Find Mistral models"
    # The offline W&B run holds the artifact's manifest, to be synced later.
    [log] = Path(result["run_dir"]).parent.glob("run-*.wandb")
    blob = log.read_bytes()
    needles = [b"agentop-studio", b"runs/good.json", b"dataset"]
    for needle in needles + ([b"agentop.db"] if backend == "sqlite" else []):
        assert needle in blob


def test_finetune_jsonl_from_selected_failed_and_low_scored_runs(client):
    r = client.post(
        "/api/exports",
        json={"kind": "finetune_jsonl", "run_ids": ["good"], "failed": True, "below": 0.5},
    )
    export = finished(client, r.json()["export_id"])
    assert export["status"] == "succeeded", export["error"]
    result = export["result"]
    assert result["examples"] == 3 and result["corrected"] == 2 and result["considered"] == 4
    assert (
        list(result["skipped"]) == ["badraw"]
        and "no corrected answer" in result["skipped"]["badraw"]
    )
    body = client.get(f"/api/exports/{export['id']}/file")
    assert body.status_code == 200
    lines = [json.loads(line) for line in body.text.splitlines()]
    assert all(validate_line(line) == [] for line in lines)
    good, fixed, low = lines
    assert [m["role"] for m in good["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    call = good["messages"][2]["tool_calls"][0]
    assert ID_RE.match(call["id"]) and good["messages"][3]["tool_call_id"] == call["id"]
    assert "content" not in good["messages"][2]
    assert good["tools"][0]["function"]["name"] == "hf_list_models"
    assert fixed["messages"][-1] == {"role": "assistant", "content": "2 + 2 = 4."}
    assert low["messages"][-1]["content"] == "c-a-t"  # the correction, not "k-a-t"
    assert all(m["content"] != "k-a-t" for m in low["messages"])


def test_validate_line_catches_what_mistral_rejects():
    assert "the last message must be from the assistant" in validate_line(
        {"messages": [{"role": "user", "content": "hi"}]}
    )
    bad_call = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{"}}],
            },
            {"role": "tool", "content": "x", "tool_call_id": "zzzzzzzzz"},
            {"role": "assistant", "content": "done"},
        ]
    }
    problems = " ".join(validate_line(bad_call))
    assert "9 letters" in problems and "JSON" in problems and "earlier tool call" in problems


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "csv"}, "kind"),
        ({"kind": "huggingface", "repo": "not a repo"}, "namespace/dataset-name"),
        ({"kind": "huggingface", "format": "xml"}, "format"),
        ({"kind": "finetune_jsonl"}, "choose runs"),
        ({"kind": "finetune_jsonl", "below": "low"}, "below"),
        ({"kind": "finetune_jsonl", "run_ids": [1, 2]}, "run_ids"),
    ],
)
def test_bad_export_requests_are_400(client, body, message):
    r = client.post("/api/exports", json=body)
    assert r.status_code == 400 and message in r.text


def test_exports_need_a_member(app, keys):
    from litestar.testing import TestClient

    with TestClient(app) as c:
        c.headers["X-API-Key"] = keys["viewer"]
        assert c.post("/api/exports", json={"kind": "wandb"}).status_code == 403
        assert c.get("/api/exports").status_code == 200
        assert c.get("/api/exports/999").status_code == 404


def test_exports_page_starts_one_and_streams_progress(page_client):
    r = page_client.post(
        "/exports",
        data={"kind": "finetune_jsonl", "failed": "true", "_csrf_token": csrf(page_client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    [export] = page_client.get("/api/exports").json()["exports"]
    finished(page_client, export["id"])
    # The progress stream sends the export as it is and ends once it is done.
    stream = page_client.get(f"/exports/{export['id']}/events")
    assert "event: export_progress" in stream.text and "event: stream_end" in stream.text
    assert "download JSONL" in page_client.get("/exports").text
    bad = page_client.post(
        "/exports", data={"kind": "finetune_jsonl", "_csrf_token": csrf(page_client)}
    )
    assert bad.status_code == 422 and "choose runs" in bad.text


def test_wandb_metrics_logged_per_finished_run(
    data_dir, fake_mistral, keys, monkeypatch, database_url
):
    from tests.conftest import api_client

    monkeypatch.setenv("WANDB_DATA_DIR", str(data_dir / "wandb-data"))
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        agent_config=agent_config(fake_mistral.url),
        integrations=FAST.model_copy(update={"wandb_run_metrics": True}),
    )
    with api_client(settings, keys["member"]) as c:
        run_id = c.post("/api/runs", json={"prompt": "hi", "model": MISTRAL_MODEL}).json()["run_id"]
        wait_for_run(c, run_id)

        def logged():
            for log in (data_dir / "wandb").rglob("run-*.wandb"):
                if f"agent-run-{run_id}".encode() in log.read_bytes():
                    return log
            return None

        log = wait_until(logged, 60, "W&B run metrics")
        assert b"cost_usd" in log.read_bytes() and b"input_tokens" in log.read_bytes()


def test_cli_export(settings, capsys, tmp_path, monkeypatch):
    from app.cli import main

    if settings.database_url:  # the CLI reads its settings from the environment
        monkeypatch.setenv("AGENTOP_DATABASE_URL", settings.database_url)

    out = tmp_path / "train.jsonl"
    code = main(
        [
            "export",
            "finetune",
            "--runs",
            "good",
            "--failed",
            "--below",
            "0.5",
            "--out",
            str(out),
            "--data-dir",
            str(settings.data_dir),
        ]
    )
    assert code == 0
    assert len(out.read_text().splitlines()) == 3
    printed = capsys.readouterr()
    assert "3 example(s)" in printed.out and "badraw" in printed.out
    code = main(
        ["export", "hf", "--format", "jsonl", "--no-push", "--data-dir", str(settings.data_dir)]
    )
    assert code == 0
    assert "runs.jsonl" in capsys.readouterr().out
    assert main(["export", "hf", "--repo", "bad repo", "--data-dir", str(settings.data_dir)]) == 2


# --- the dataset card's link to the studio --------------------------------------------


def _card(**context):
    from app.exports.dataset_card import dataset_card, metadata

    base = {
        "metadata": metadata("parquet", {}, "n<1K"),
        "configs": [],
        "repo": None,
        "fmt": "parquet",
        "runs": 0,
        "evaluations": 0,
        "exported_at": "2026-01-01 00:00 UTC",
        "models": [],
        "statuses": [],
        "sources": [],
        "metrics": [],
        "runs_schema": [],
        "evaluations_schema": [],
    }
    return dataset_card({**base, **context})


def test_dataset_card_links_to_the_repository_setting_or_to_nothing():
    linked = _card(repo_url="https://git.example.org/team/agentop")
    assert "[AgentOp-Studio](https://git.example.org/team/agentop)" in linked
    unset = _card()
    assert "recorded by AgentOp-Studio, exported" in unset
    assert "https://github.com/" not in unset and "](" not in unset.split("## Use")[0]
    # Not an http(s) URL: no link; one with Markdown in it cannot break out.
    assert "](" not in _card(repo_url="javascript:alert(1)").split("## Use")[0]
    odd = _card(repo_url="https://example.org/a b)[x](https://evil.example")
    assert "(https://example.org/a%20b%29%5Bx%5D%28https://evil.example)" in odd
