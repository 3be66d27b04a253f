"""In Chromium: score a run by hand, step through its memory, see it on the eval dashboard."""

from __future__ import annotations

import re
import time

import pytest

from app.store import Store
from app.store.runs import create_run
from tests.browser import log_in, save_shot
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply
from tests.receivers import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def history(settings):
    """A week of earlier runs and scores, so the charts have something to draw."""
    store = Store(settings.db_path)
    now = time.time()
    for i in range(28):
        run_id = f"hist{i:02d}"
        started = now - (i % 7) * 86400 - 3600 * (i % 5) - 120
        ok = i % 5 != 0
        store.write_sync(
            create_run,
            {
                "id": run_id,
                "status": "succeeded" if ok else "failed",
                "prompt": f"question {i}",
                "model": MISTRAL_MODEL if i % 3 else "smollm2-135m",
                "provider": "mistral",
                "session_id": ("support", "research")[i % 2],
                "started_at": started,
                "ended_at": started + 1 + i % 4,
                "latency_ms": 700 + 180 * (i % 9),
                "input_tokens": 300 + 40 * i,
                "output_tokens": 60 + 9 * i,
                "cost_usd": 0.00004 * (i + 3),
                "cost_status": "priced",
                "response": "answer",
            },
        )

        def add(db, run_id=run_id, i=i, at=started + 60, ok=ok):
            for metric, value, passed in (
                ("score", 2 + i % 4, int(2 + i % 4 >= 4)),
                ("exact_match", float(ok and i % 3 != 1), int(ok and i % 3 != 1)),
            ):
                db["evaluations"].insert(
                    {
                        "run_id": run_id,
                        "metric": metric,
                        "value": value,
                        "passed": passed,
                        "source": "heuristic",
                        "created_at": at,
                    }
                )

        store.write_sync(add)
    store.close()


def test_score_a_run_by_hand_and_see_it_on_the_dashboard(
    history,
    browser,
    live_server,
    fake_mistral,
    keys,
    tmp_path,  # noqa: F811
):
    import httpx

    fake_mistral.add(
        Reply(
            text="Let me check.",
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}],
        ),
        Reply(text="The capital of France is **Paris**.", usage=(120, 30)),
    )
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["admin"]}) as api:
        run_id = api.post(
            "/api/runs",
            json={
                "prompt": "What is the capital of France?",
                "model": MISTRAL_MODEL,
                "session": "support",
            },
        ).json()["run_id"]
        assert wait_for_run(api, run_id)["run"]["status"] == "succeeded"

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, live_server.url, keys["member"])

    page.goto(f"{live_server.url}/runs/{run_id}")
    # The memory viewer opens on the last step; step back to the tool results.
    assert page.locator("#memory-steps a[aria-current]").inner_text() == "3"
    page.click("#memory-steps a:text-is('2')")
    page.wait_for_selector("#memory-steps a[aria-current]:text-is('2')")
    assert "tool results" in page.inner_text(".memory-title")
    assert page.locator(".memory-messages li.mem-added").count() == 1
    assert page.locator("table.scratch tr.mem-changed").count() >= 2

    # Score it: 4 out of 5, a comment, thumbs up.
    page.click("#score-form label.pill:has-text('4')")
    page.fill("#eval-comment", "Right answer, a bit slow.")
    page.click("#score-form button.thumb-up")
    page.wait_for_selector("#run-evals .form-ok")
    rows = page.locator("#run-evals tr.eval-row")
    assert rows.count() == 2
    assert "up" in rows.nth(1).inner_text() and "4/5" in rows.nth(0).inner_text()
    assert "Right answer" in page.inner_text("#run-evals")
    save_shot(page, tmp_path, "run-scored")

    # The dashboard of evaluations shows it.
    page.click("nav[aria-label=Main] a:text-is('Evals')")
    page.wait_for_url("**/evals")
    recent = page.locator("#recent-evals tbody tr").first
    assert run_id[:8] in recent.inner_text()
    assert re.search(r"thumbs|score", recent.inner_text())
    assert page.locator("#chart-success circle.dot").count() >= 7
    assert page.locator("figure.chart .chart-title:text-is('score')").count() == 1
    assert page.locator("figure.chart .chart-title:text-is('thumbs')").count() == 1
    assert page.locator("#by-model tbody tr").count() == 2
    assert page.locator("#by-session tbody tr").count() == 2
    shot = save_shot(page, tmp_path, "evals-dashboard")
    assert shot.stat().st_size > 20_000

    # Filter to one session: the thumbs-up run is in "support".
    page.select_option("#f-session", "support")
    page.click(".filter-form button[type=submit]")
    page.wait_for_url("**session=support**")
    assert "session support" in page.inner_text("h1")

    page.goto(live_server.url + "/")
    assert page.locator("#dashboard-charts figure.chart").count() == 4
    assert page.locator("#chart-runs rect.bar").count() >= 7
    save_shot(page, tmp_path, "dashboard-charts")
    assert problems == []


def test_run_an_experiment_and_watch_it_live_then_compare(
    browser,
    live_server,
    fake_mistral,
    keys,
    tmp_path,  # noqa: F811
):
    import httpx

    items = [
        {"input": w, "expected": f"Echo: {w}" if i % 2 == 0 else w.upper()}
        for i, w in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"])
    ]
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["admin"]}) as api:
        ds = api.post("/api/datasets", json={"name": "greek", "items": items}).json()
        baseline = api.post(
            "/api/experiments",
            json={
                "dataset_id": ds["id"],
                "name": "baseline",
                "evaluators": ["exact_match"],
                "config": {"model": MISTRAL_MODEL, "tools": []},
            },
        ).json()
        wait_until(
            lambda: api.get(f"/api/experiments/{baseline['id']}").json()["status"] == "succeeded",
            30,
            "the baseline experiment to succeed",
        )
    # The second experiment answers slowly, so the page sees it progress.
    fake_mistral.add(
        *[
            Reply(text=w.upper(), chunk_size=1, delay_s=0.15)
            for w in ["alpha", "beta", "gamma", "delta", "epsilon"]
        ]
    )

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    log_in(page, live_server.url, keys["member"])
    page.goto(f"{live_server.url}/datasets/{ds['id']}")
    save_shot(page, tmp_path, "dataset")
    page.fill("#ex-name", "shouting")
    page.fill("#system_prompt", "Answer in capitals.")
    page.fill("#concurrency", "1")
    page.click("#experiment-form button[type=submit]")
    page.wait_for_url("**/experiments/*")
    assert page.locator("[sse-connect]").count() == 1
    page.wait_for_function(
        "() => { const v = +document.querySelector('#exp-progress-bar').value; return v > 0 && v < 5; }",
        timeout=15_000,
    )
    save_shot(page, tmp_path, "experiment-running")
    page.wait_for_selector("#exp-status.status-succeeded", timeout=30_000)
    assert page.locator("#exp-progress-bar").get_attribute("value") == "5"
    assert page.locator("#exp-items tr.exp-item-succeeded").count() == 5  # rows updated live
    assert "ALPHA" in page.inner_text(
        "#exp-item-"
        + str(page.locator("#exp-items tbody tr").first.get_attribute("id").split("-")[-1])
    )
    save_shot(page, tmp_path, "experiment-done")

    page.select_option("#compare-form select", str(baseline["id"]))
    page.click("#compare-form button[type=submit]")
    page.wait_for_url("**/experiments/compare*")
    assert page.locator("#compare-items tbody tr").count() == 5
    # A is this experiment, B the baseline: B is better where the echo was expected.
    assert page.locator("#compare-items tr.change-better").count() == 3
    assert page.locator("#compare-items tr.change-worse").count() == 2  # beta, delta
    save_shot(page, tmp_path, "experiment-compare")
    page.goto(f"{live_server.url}/datasets")
    assert page.locator("#datasets-table tbody tr").count() == 1
    save_shot(page, tmp_path, "datasets")
    assert problems == []


def test_memory_viewer_follows_a_live_run(browser, live_server, fake_mistral, keys, tmp_path):  # noqa: F811
    import httpx

    fake_mistral.add(
        Reply(
            text="Let me check.",
            chunk_size=2,
            delay_s=0.05,
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}],
        ),
        Reply(text="Paris is the capital of France.", chunk_size=2, delay_s=0.05),
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    log_in(page, live_server.url, keys["member"])
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["admin"]}) as api:
        run_id = api.post(
            "/api/runs", json={"prompt": "Capital of France?", "model": MISTRAL_MODEL}
        ).json()["run_id"]
    page.goto(f"{live_server.url}/runs/{run_id}")
    assert page.locator("[sse-connect]").count() == 1
    page.wait_for_selector("#run-status.status-succeeded", timeout=20_000)
    # Steps arrived over SSE and the viewer moved to the newest, without a reload.
    page.wait_for_selector("#memory-steps a[aria-current]:text-is('3')", timeout=5_000)
    assert page.locator("#memory-steps a").count() == 4
    assert "round 2: model reply" in page.inner_text(".memory-title")
    save_shot(page, tmp_path, "memory-live")
    assert problems == []
