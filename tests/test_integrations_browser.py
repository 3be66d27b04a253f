"""A person in Chromium uses the integration pages: alert rules, exports and fine-tuning jobs
that update live over SSE, the price tables, and a run ingested over OTLP."""

from __future__ import annotations

import pytest

from app.core.integration_settings import IntegrationSettings
from app.core.settings import Settings
from app.store import Store
from tests.browser import log_in, save_shot
from tests.conftest import agent_config
from tests.fake_mistral_ft import FakeFineTuning
from tests.seed_runs import seed_all
from tests.test_otlp import genai_agent, provider_for

pytestmark = pytest.mark.browser


@pytest.fixture
def settings(data_dir, fake_mistral):
    store = Store(data_dir / "agentop.db")
    seed_all(store)
    store.close()
    fast = IntegrationSettings(
        retry_attempts=2,
        retry_initial_s=0.01,
        retry_max_s=0.05,
        finetune_poll_s=0.4,
        wandb_mode="offline",
    )
    return Settings(
        data_dir=data_dir,
        agent_config=agent_config(fake_mistral.url),
        integrations=fast.model_copy(update={"hf_repo": "team/agent-runs"}),
    )


def test_integration_pages(browser, live_server, keys, fake_mistral, tmp_path):  # noqa: F811
    FakeFineTuning(fake_mistral, polls=4)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, live_server.url, keys["admin"])

    # Alerts: add a rule through the form.
    page.goto(live_server.url + "/alerts")
    page.fill("#rule-name", "Expensive run")
    page.select_option("#rule-kind", "run_cost")
    page.fill("#threshold", "0.5")
    page.fill("#webhook", "https://hooks.slack.com/services/T000/B000/XXXX")
    page.click(".rule-form button[type=submit]")
    page.wait_for_selector("#rule-1")
    assert "a run costs more than $0.5" in page.inner_text("#rule-1")
    save_shot(page, tmp_path, "alerts")

    # Exports: build a fine-tuning JSONL and watch it finish without reloading.
    page.goto(live_server.url + "/exports")
    page.check("input[name=failed]")
    page.click("form:has(input[value=finetune_jsonl]) button[type=submit]")
    page.wait_for_selector("#export-1 .status-succeeded", timeout=20_000)
    assert "download JSONL" in page.inner_text("#export-1")
    save_shot(page, tmp_path, "exports")

    # Fine-tuning: the job's status moves on live, then names its model.
    page.goto(live_server.url + "/finetune")
    page.fill("#ft-runs", "good")
    page.click("form[action='/finetune'] button[type=submit]")
    page.wait_for_selector("#finetune-1 .job-head", timeout=10_000)
    page.wait_for_selector("#finetune-1 .status-succeeded", timeout=30_000)
    assert "ft:open-mistral-7b" in page.inner_text("#finetune-1")
    save_shot(page, tmp_path, "finetune")
    page.goto(live_server.url + "/runs/new")
    assert page.locator("select[name=model] option", has_text="ft:open-mistral-7b").count() == 1

    page.goto(live_server.url + "/settings/prices")
    assert page.locator("table.prices tbody tr").count() > 20
    save_shot(page, tmp_path, "prices")

    # A run ingested over OTLP reads like a native one.
    provider = provider_for(live_server.url, keys["member"])
    genai_agent(provider.get_tracer("test"))
    provider.shutdown()
    page.goto(live_server.url + "/runs")
    page.click("table.runs tbody tr:first-child a")
    page.wait_for_selector("#thread .tool-call")
    assert "18°C" in page.inner_text("#thread")
    save_shot(page, tmp_path, "otlp-run")
