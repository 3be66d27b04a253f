"""Every page fits its window: at 1366x900 and at 390x844, with realistic data.

One seeded app and one browser visit every HTML page and check that the page
itself never scrolls sideways (wide tables scroll inside their card). A
full-page screenshot of each page at each size is written to
docs/screenshots/<page>-<width>.jpg for a person to look at.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from agents.config import MistralConfig
from app.auth.keys import create_key
from app.core.integration_settings import IntegrationSettings
from app.core.settings import Settings
from app.pricing.bodies import PriceOverride
from app.pricing.tables import add_override
from app.store import Store
from app.store.runs import create_run
from tests.conftest import MISTRAL_MODEL, agent_config, wait_for_run
from tests.fake_mistral import Reply
from tests.fake_mistral_ft import FakeFineTuning
from tests.receivers import wait_until
from tests.seed_runs import seed_all
from tests.test_otlp import genai_agent, provider_for

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# JPEG: a tall page as PNG weighs up to 700 kB, and these files are committed.
SHOT: dict[str, Any] = {"type": "jpeg", "quality": 55}
SIZES = ((1366, 900), (390, 844))
LONG_MODEL = "mistral-large-2411-instruct-extended-context"
# A dozen and more metrics: the evals dashboard once grew a column per metric.
METRICS = (
    "score",
    "thumbs",
    "exact_match",
    "contains",
    "regex",
    "json_valid",
    "tool_call_success",
    "latency_under",
    "cost_under",
    "llm_judge_helpfulness",
    "llm_judge_faithfulness",
    "answer_length",
    "no_refusal",
    "grounded_in_context",
)


def _history(store: Store) -> None:
    """Three weeks of runs over several models and sessions, each scored on every metric."""
    now = time.time()
    models = (MISTRAL_MODEL, LONG_MODEL, "smollm2-135m", "ft:open-mistral-7b:a1b2c3d4:agentop")
    for i in range(36):
        run_id = f"hist-{i:02d}-{'x' * 20}"
        started = now - (i % 14) * 86400 - 3600 * (i % 5) - 120
        ok = i % 6 != 0
        store.write_sync(
            create_run,
            {
                "id": run_id,
                "status": "succeeded" if ok else "failed",
                "error": None if ok else "provider error: 503 Service Unavailable, retried 3 times",
                "prompt": f"Question {i}: summarise the quarterly report for the support team",
                "model": models[i % len(models)],
                "provider": "mistral",
                "session_id": ("customer-support-escalations-eu", "research", "demo")[i % 3],
                "started_at": started,
                "ended_at": started + 1 + i % 4,
                "latency_ms": 700 + 1800 * (i % 9),
                "input_tokens": 3000 + 400 * i,
                "output_tokens": 600 + 90 * i,
                "cost_usd": 0.0004 * (i + 3),
                "cost_status": "priced",
                "response": "An answer.",
            },
        )

        def scores(db: Any, run_id: str = run_id, i: int = i, at: float = started + 60) -> None:
            for n, metric in enumerate(METRICS):
                db["evaluations"].insert(
                    {
                        "run_id": run_id,
                        "metric": metric,
                        "value": float((i + n) % 5) / 4,
                        "passed": int((i + n) % 3 != 0),
                        "source": "heuristic" if n % 2 else "llm-judge",
                        "created_at": at,
                    }
                )

        store.write_sync(scores)


@pytest.fixture
def settings(data_dir, fake_mistral):
    store = Store(data_dir / "agentop.db")
    seed_all(store)
    _history(store)
    for name, role in (("ci-pipeline-nightly-evaluations", "member"), ("dashboard", "viewer")):
        store.write_sync(create_key, name, role)
    override = PriceOverride(
        vendor="mistral", item=LONG_MODEL, field="input_per_m", value=2.5, note="negotiated rate"
    )
    store.write_sync(add_override, override, "page", time.time())
    store.close()
    mistral = MistralConfig(
        api_key="test-key",
        server_url=fake_mistral.url,
        models=(MISTRAL_MODEL, LONG_MODEL, "open-mistral-7b"),
        retry_initial_ms=20,
        retry_max_elapsed_ms=3000,
        timeout_ms=10000,
    )
    fast = IntegrationSettings(
        retry_attempts=2, retry_initial_s=0.01, retry_max_s=0.05, finetune_poll_s=0.1
    )
    return Settings(
        data_dir=data_dir,
        agent_config=agent_config(fake_mistral.url, mistral=mistral),
        integrations=fast,
    )


def _seed_live(api: httpx.Client, fake_mistral: Any, server_url: str, key: str) -> dict[str, str]:
    """Runs, a replay and its diff, an OTLP run, a dataset with two experiments,
    an export, a fine-tune job and an alert rule, made through the API."""
    ids: dict[str, str] = {}
    fake_mistral.add(
        Reply(
            text="Let me say it.",
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}],
        ),
        Reply(text="The capital of France is **Paris**. It sits on the Seine.", usage=(120, 14)),
    )
    r = api.post(
        "/api/runs",
        json={
            "prompt": "What is the capital of France? Answer in one sentence.",
            "model": MISTRAL_MODEL,
            "session": "customer-support-escalations-eu",
        },
    )
    ids["run"] = r.json()["run_id"]
    wait_for_run(api, ids["run"])
    fake_mistral.add(Reply(text="Paris is the capital of France, on the river Seine."))
    replay = api.post(f"/api/runs/{ids['run']}/replay", json={"temperature": 1.1}).json()
    ids["replay"], ids["diff"] = replay["run_id"], replay["diff_id"]
    wait_for_run(api, ids["replay"])
    wait_until(
        lambda: api.get(f"/api/diffs/{ids['diff']}").json()["status"] == "ready", 10, "the diff"
    )

    provider = provider_for(server_url, key)
    genai_agent(provider.get_tracer("layout"))
    provider.shutdown()
    otlp = api.get("/api/runs", params={"limit": 1}).json()["runs"][0]
    ids["otlp"] = otlp["id"]
    ids["span"] = api.get(f"/api/runs/{ids['otlp']}/spans").json()[-1]["span_id"]

    items = [
        {"input": f"question number {n} about a long topic", "expected": f"Echo: answer {n}"}
        for n in range(6)
    ]
    dataset = api.post("/api/datasets", json={"name": "support questions", "items": items}).json()
    ids["dataset"] = str(dataset["id"])
    experiments = []
    for name in ("baseline: mistral small, no tools", f"candidate: {LONG_MODEL}"):
        body = {
            "dataset_id": dataset["id"],
            "name": name,
            "config": {"model": MISTRAL_MODEL, "tools": []},
            "evaluators": ["exact_match", "contains", "tool_call_success"],
            "concurrency": 2,
        }
        experiments.append(api.post("/api/experiments", json=body).json()["id"])
    for experiment_id in experiments:
        wait_until(
            lambda e=experiment_id: (
                api.get(f"/api/experiments/{e}").json()["status"] in ("succeeded", "failed")
            ),
            30,
            "an experiment",
        )
    ids["experiment_a"], ids["experiment_b"] = map(str, experiments)

    export = api.post("/api/exports", json={"kind": "finetune_jsonl", "failed": True}).json()
    FakeFineTuning(fake_mistral, polls=1)
    job = api.post(
        "/api/finetune",
        json={"run_ids": ["good"], "failed": True, "base_model": "open-mistral-7b"},
    ).json()
    for path in (f"/api/exports/{export['export_id']}", f"/api/finetune/{job['job_id']}"):
        wait_until(lambda p=path: api.get(p).json()["status"] in ("succeeded", "failed"), 30, path)
    rule = {"name": "Expensive run", "kind": "run_cost", "threshold_usd": 0.00001}
    assert api.post("/api/alerts/rules", json=rule).status_code == 201
    rule = {"name": "Daily spend", "kind": "window_cost", "threshold_usd": 5, "window_s": 86400}
    assert api.post("/api/alerts/rules", json=rule).status_code == 201
    return ids


def _pages(ids: dict[str, str]) -> dict[str, str]:
    """Every HTML page (GET routes in app/*/pages.py) under a screenshot name."""
    run, otlp = ids["run"], ids["otlp"]
    return {
        "dashboard": "/",
        "runs": "/runs",
        "new-run": "/runs/new",
        "run": f"/runs/{run}",
        "run-failed": "/runs/badraw",
        "run-otlp": f"/runs/{otlp}",
        "replay": f"/runs/{run}/replay",
        "replay-diff": f"/diffs/{ids['diff']}",
        "diff-new": "/diffs/new",
        "lineage": f"/runs/{ids['replay']}",
        "sessions": "/sessions",
        "session": "/sessions/1",
        "memory": f"/runs/{run}/memory",
        "evals": "/evals",
        "experiments": "/experiments",
        "experiment": f"/experiments/{ids['experiment_a']}",
        "experiment-compare": (
            f"/experiments/compare?a={ids['experiment_a']}&b={ids['experiment_b']}"
        ),
        "datasets": "/datasets",
        "dataset": f"/datasets/{ids['dataset']}",
        "exports": "/exports",
        "finetune": "/finetune",
        "alerts": "/alerts",
        "prices": "/settings/prices",
        "keys": "/settings/keys",
        "trace": f"/runs/{otlp}/trace",
        "span": f"/runs/{otlp}/spans/{ids['span']}",
        "not-found": "/runs/no-such-run",
    }


def _too_wide(page: Any) -> int:
    """How far the page scrolls sideways (0 when it fits its window)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # noqa: S608
    )


# The deepest elements that reach past the window's right edge: what to fix.
CULPRITS = """() => {
  const out = e => e.checkVisibility() && e.getBoundingClientRect().right > window.innerWidth + 1;
  const clipped = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
    if (getComputedStyle(a).overflowX !== 'visible') return true; return false; };
  return [...document.querySelectorAll('body *')]
    .filter(e => e.checkVisibility() && out(e) && !clipped(e) && ![...e.children].some(out))
    .slice(0, 3).map(e => {
      const path = [];
      for (let a = e; a && a !== document.body && path.length < 5; a = a.parentElement)
        path.unshift(a.tagName.toLowerCase() + (a.id ? '#' + a.id : '')
          + (typeof a.className === 'string' && a.className ? '.' + a.className.trim().split(/ +/).join('.') : ''));
      return path.join(' > ') + ' ' + Math.round(e.getBoundingClientRect().right) + 'px';
    });
}"""

# Selects that cut their longest option short (measured in the select's own font).
CUT_SELECTS = """() => {
  const ctx = document.createElement('canvas').getContext('2d');
  return [...document.querySelectorAll('select')].filter(s => s.checkVisibility()).filter(s => {
    ctx.font = getComputedStyle(s).font;
    const widest = Math.max(...[...s.options].map(o => ctx.measureText(o.text).width));
    return widest + 28 > s.clientWidth;  // the arrow and padding take about 28 px
  }).map(s => '#' + s.id + ' ' + s.clientWidth + 'px for ' + Math.round(Math.max(...[...s.options].map(o => ctx.measureText(o.text).width))) + 'px of text');
}"""


def _visit(page: Any, url: str) -> None:
    page.goto(url)
    # Parts fetched by htmx after load (the run page's trace card) settle first.
    if page.locator("#trace[hx-get]").count():
        expect(page.locator("#trace tr.span-row").first).to_be_visible(timeout=10_000)


def _boosted_navigation(page: Any, url: str, narrow: bool) -> None:
    """The nav swaps pages over htmx (hx-boost): no reload, a new title, a working back button.
    On a narrow screen the links sit in a <details> menu that opens without JavaScript."""
    page.goto(url + "/")
    page.evaluate("window.__stillHere = true")
    if narrow:
        expect(page.locator("nav[aria-label=Main]")).to_be_hidden()
        page.click("details.nav-menu summary")
        page.click("nav[aria-label=Menu] a[href='/evals']")
    else:
        expect(page.locator("details.nav-menu")).to_be_hidden()
        page.click("nav[aria-label=Main] a[href='/evals']")
    expect(page).to_have_url(url + "/evals")
    expect(page).to_have_title(re.compile("^Evaluations"))
    assert page.evaluate("window.__stillHere") is True  # swapped, not reloaded
    page.go_back()
    expect(page).to_have_url(url + "/")
    expect(page.locator("h1")).to_have_text("Dashboard")


def test_every_page_fits_its_window(browser, live_server, fake_mistral, keys):
    with httpx.Client(
        base_url=live_server.url, headers={"X-API-Key": keys["admin"]}, timeout=20
    ) as api:
        ids = _seed_live(api, fake_mistral, live_server.url, keys["member"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    overflow: dict[str, list[str]] = {}
    cut: dict[str, list[str]] = {}
    errors: list[str] = []
    for width, height in SIZES:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live_server.url + "/login")
        page.fill("input[name=key]", "ao_" + "x" * 43)  # a whole key, as long as a real one
        if _too_wide(page):
            overflow[f"login-{width}"] = page.evaluate(CULPRITS)
        key_box = page.locator("input[name=key]")
        text, box = key_box.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert text <= box, f"a whole key needs {text}px, the box is {box}px at {width}px"
        page.screenshot(path=str(SCREENSHOTS / f"login-{width}.jpg"), full_page=True, **SHOT)
        page.fill("input[name=key]", keys["admin"])
        page.click("main button[type=submit]")
        page.wait_for_url(live_server.url + "/")
        for name, path in _pages(ids).items():
            _visit(page, live_server.url + path)
            if _too_wide(page):
                overflow[f"{name}-{width}"] = page.evaluate(CULPRITS)
            if width > 1000:
                cut[name] = page.evaluate(CUT_SELECTS)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.jpg"), full_page=True, **SHOT)
        _boosted_navigation(page, live_server.url, narrow=width < 900)
        context.close()
    assert overflow == {}, f"pages wider than their window (what sticks out): {overflow}"
    assert {name: c for name, c in cut.items() if c} == {}, "selects that cut names short"
    assert errors == []
