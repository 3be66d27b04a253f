"""The fine-tune loop against the local fake Mistral server: build the JSONL from runs, upload
it with the real SDK, create and track the job, register the model, run and replay on it."""

from __future__ import annotations

import pytest

from app.core.integration_settings import IntegrationSettings
from app.core.settings import Settings
from app.store import Store
from tests.conftest import agent_config, api_client, csrf, wait_for_run
from tests.fake_mistral_ft import FakeFineTuning
from tests.receivers import wait_until
from tests.seed_runs import seed_all

pytestmark = pytest.mark.both_backends

FAST = IntegrationSettings(
    retry_attempts=3, retry_initial_s=0.01, retry_max_s=0.05, finetune_poll_s=0.05
)


@pytest.fixture
def settings(data_dir, fake_mistral, database_url):
    store = Store(data_dir / "agentop.db", url=database_url)
    seed_all(store)
    store.close()
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        agent_config=agent_config(fake_mistral.url),
        integrations=FAST,
    )


def done(client, job_id: int) -> dict:
    return wait_until(
        lambda: (lambda j: j if j["status"] in ("succeeded", "failed", "cancelled") else None)(
            client.get(f"/api/finetune/{job_id}").json()
        ),
        30,
        f"fine-tune {job_id}",
    )


def test_fine_tune_job_registers_a_model_to_run_on(client, fake_mistral):
    ft = FakeFineTuning(fake_mistral, polls=3, fail_uploads=1)
    r = client.post(
        "/api/finetune",
        json={
            "run_ids": ["good"],
            "failed": True,
            "below": 0.5,
            "base_model": "open-mistral-7b",
            "training_steps": 20,
            "learning_rate": 0.0002,
        },
    )
    assert r.status_code == 202, r.text
    job = done(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job["error"]
    model = job["fine_tuned_model"]
    assert model.startswith("ft:open-mistral-7b:") and model.endswith(":agentop")

    [uploaded] = ft.files.values()
    assert uploaded["purpose"] == "fine-tune" and len(uploaded["lines"]) == 3
    [remote] = ft.jobs.values()
    assert remote["hyperparameters"] == {"training_steps": 20, "learning_rate": 0.0002}
    assert remote["training_files"] == [job["mistral_file_id"]]
    # The 503 on the first upload was retried and recorded.
    assert any("503" in e["error"] and e["action"] == "upload file" for e in job["errors"])
    # The training file came through an export, visible like any other.
    export = client.get(f"/api/exports/{job['export_id']}").json()
    assert export["kind"] == "finetune_jsonl" and export["result"]["examples"] == 3

    # The model is offered for runs, and a run on it goes to Mistral.
    listing = client.get("/api/finetune").json()
    assert [m["name"] for m in listing["models"]] == [model]
    assert model in client.get("/runs/new").text
    run_id = client.post("/api/runs", json={"prompt": "Spell cat", "model": model}).json()["run_id"]
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "succeeded" and run["model"] == model and run["provider"] == "mistral"
    assert fake_mistral.requests[-1]["model"] == model
    page = client.get("/finetune").text
    assert model in page and "succeeded" in page


def test_registered_models_survive_a_restart(settings, keys, fake_mistral):
    FakeFineTuning(fake_mistral, polls=1)
    with api_client(settings, keys["member"]) as c:
        job = done(c, c.post("/api/finetune", json={"run_ids": ["good"]}).json()["job_id"])
        model = job["fine_tuned_model"]
    with api_client(settings, keys["member"]) as c:
        assert model in c.get("/runs/new").text


def test_failed_job_is_shown_with_its_error(client, fake_mistral):
    FakeFineTuning(fake_mistral, polls=1, final_status="FAILED")
    job = done(client, client.post("/api/finetune", json={"run_ids": ["good"]}).json()["job_id"])
    assert job["status"] == "failed" and "FAILED" in job["error"]
    assert client.get("/api/finetune").json()["models"] == []


def test_no_usable_examples_fails_before_any_upload(client, fake_mistral):
    ft = FakeFineTuning(fake_mistral)
    job = done(client, client.post("/api/finetune", json={"run_ids": ["badraw"]}).json()["job_id"])
    assert job["status"] == "failed" and "no usable examples" in job["error"]
    assert ft.files == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"run_ids": ["good"], "base_model": "bad model!"}, "base_model"),
        ({"run_ids": ["good"], "training_steps": "many"}, "training_steps"),
        ({"run_ids": ["good"], "learning_rate": 5}, "learning_rate"),
        ({}, "choose runs"),
    ],
)
def test_bad_fine_tune_requests_are_400(client, body, message):
    r = client.post("/api/finetune", json=body)
    assert r.status_code == 400 and message in r.text


def test_fine_tuning_needs_a_mistral_key(data_dir, keys, database_url):
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        agent_config=agent_config(None),
        integrations=FAST,
    )
    with api_client(settings, keys["member"]) as c:
        r = c.post("/api/finetune", json={"run_ids": ["good"]})
        assert r.status_code == 400 and "MISTRAL_API_KEY" in r.json()["detail"]


def test_fine_tune_page(page_client, fake_mistral):
    FakeFineTuning(fake_mistral, polls=2)
    r = page_client.post(
        "/finetune",
        data={"run_ids": "good", "base_model": "open-mistral-7b", "_csrf_token": csrf(page_client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    [job] = page_client.get("/api/finetune").json()["jobs"]
    done(page_client, job["id"])
    stream = page_client.get(f"/finetune/{job['id']}/events").text
    assert "event: finetune_status" in stream and "succeeded" in stream
    bad = page_client.post("/finetune", data={"run_ids": "", "_csrf_token": csrf(page_client)})
    assert bad.status_code == 422 and "choose runs" in bad.text


def test_replay_on_the_fine_tuned_model(client, fake_mistral):
    """Replays (issue 3) take a model override; the registered model must be accepted."""
    FakeFineTuning(fake_mistral, polls=1)
    model = done(client, client.post("/api/finetune", json={"run_ids": ["good"]}).json()["job_id"])[
        "fine_tuned_model"
    ]
    r = client.post("/api/runs/good/replay", json={"model": model})
    assert r.status_code == 201, r.text
    assert r.json()["parent_run_id"] == "good"
    replayed = wait_for_run(client, r.json()["run_id"])["run"]
    assert replayed["status"] == "succeeded", replayed["error"]
    assert replayed["model"] == model and replayed["provider"] == "mistral"
    assert fake_mistral.requests[-1]["model"] == model
