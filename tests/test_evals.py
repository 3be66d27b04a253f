"""Evaluations: the API and its validation, scoring by hand, evaluators on a run, the dashboards."""

from __future__ import annotations

import time

import pytest
from bs4 import BeautifulSoup

from app.store import Store
from app.store.runs import create_run
from tests.conftest import MISTRAL_MODEL, api_client, csrf, wait_for_run
from tests.fake_mistral import Reply

pytestmark = pytest.mark.both_backends


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


def finished_run(client, fake_mistral, text="Paris is the capital.", key=None) -> str:
    """A succeeded run; ``key`` for logged-in page clients (the API wants a key to start runs)."""
    fake_mistral.add(Reply(text=text, usage=(20, 5)))
    headers = {"X-API-Key": key} if key else {}
    run_id = client.post(
        "/api/runs",
        json={"prompt": "Capital of France?", "model": MISTRAL_MODEL, "tools": []},
        headers=headers,
    ).json()["run_id"]
    assert wait_for_run(client, run_id)["run"]["status"] == "succeeded"
    return run_id


# --- POST /api/evals -----------------------------------------------------------------------


def test_record_and_list_evaluations(client, fake_mistral):
    run_id = finished_run(client, fake_mistral)
    r = client.post(
        "/api/evals",
        json={"run_id": run_id, "metric": "accuracy", "value": 0.9, "comment": "close enough"},
    )
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["source"] == "api" and row["value"] == 0.9 and row["passed"] is None
    assert row["created_by"] == "admin-key" and row["created_at"] > 0
    r = client.post(
        "/api/evals",
        json={"run_id": run_id, "metric": "review", "label": "PASS", "source": "human"},
    )
    assert r.status_code == 201 and r.json()["passed"] is True  # verdict read from the label
    r = client.post(
        "/api/evals",
        json={
            "run_id": run_id,
            "metric": "grade",
            "value": 2,
            "label": "meh",
            "passed": False,
            "source": "llm-judge",
        },
    )
    assert r.json()["passed"] is False and r.json()["label"] == "meh"
    # A corrected answer, as fine-tune exports read it.
    r = client.post(
        "/api/evals",
        json={"run_id": run_id, "metric": "correction", "label": "Paris.", "source": "human"},
    )
    assert r.status_code == 201

    listed = client.get("/api/evals", params={"run_id": run_id}).json()["evaluations"]
    assert [e["metric"] for e in listed] == ["correction", "grade", "review", "accuracy"]
    assert listed[0]["run_model"] == MISTRAL_MODEL
    assert [e["metric"] for e in client.get("/api/evals?source=human").json()["evaluations"]] == [
        "correction",
        "review",
    ]
    assert client.get("/api/evals?metric=grade").json()["evaluations"][0]["value"] == 2


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"metric": "x", "value": 1}, 400, "run_id"),
        ({"run_id": "RUN", "value": 1}, 400, "metric"),
        ({"run_id": "RUN", "metric": "x"}, 400, "give a numeric value, a label, or both"),
        ({"run_id": "RUN", "metric": "x", "value": "high"}, 400, "value"),
        ({"run_id": "RUN", "metric": "x", "value": True}, 400, "value"),
        (
            {"run_id": "RUN", "metric": "x", "value": 1, "source": "robot"},
            400,
            "Invalid enum value 'robot'",
        ),
        ({"run_id": "RUN", "metric": "  ", "value": 1}, 400, '"key":"metric"'),
        ({"run_id": "RUN", "metric": "bad<metric>", "value": 1}, 400, '"key":"metric"'),
        ({"run_id": "RUN", "metric": "m" * 101, "value": 1}, 400, '"key":"metric"'),
        ({"run_id": "RUN", "metric": "x", "label": "l" * 20001}, 400, "length <= 20000"),
        (
            {"run_id": "RUN", "metric": "x", "value": 1, "comment": "c" * 5001},
            400,
            "length <= 5000",
        ),
        ({"run_id": "RUN", "metric": "x", "value": 1, "passed": "yes"}, 400, "passed"),
        ({"run_id": "nope", "metric": "x", "value": 1}, 404, "run 'nope' not found"),
        ([1, 2], 400, ""),
    ],
)
def test_bad_evaluations_are_4xx_with_a_message(client, fake_mistral, body, status, message):
    run_id = finished_run(client, fake_mistral) if isinstance(body, dict) else None
    if isinstance(body, dict) and body.get("run_id") == "RUN":
        body = {**body, "run_id": run_id}
    r = client.post("/api/evals", json=body)
    assert r.status_code == status, r.text
    text = r.text
    assert message in text
    assert client.get("/api/evals").json()["evaluations"] == []


def test_non_json_and_infinite_values_are_rejected(client, fake_mistral):
    run_id = finished_run(client, fake_mistral)
    r = client.post("/api/evals", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post(
        "/api/evals",
        content=f'{{"run_id": "{run_id}", "metric": "x", "value": 1e999}}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400


def test_viewers_read_but_cannot_evaluate(settings, keys, fake_mistral):
    with api_client(settings, keys["admin"]) as admin:
        run_id = finished_run(admin, fake_mistral)
    with api_client(settings, keys["viewer"]) as viewer:
        r = viewer.post("/api/evals", json={"run_id": run_id, "metric": "x", "value": 1})
        assert r.status_code == 403 and "member" in r.text
        assert viewer.get("/api/evals").status_code == 200
    with api_client(settings, keys["member"]) as member:
        r = member.post("/api/evals", json={"run_id": run_id, "metric": "x", "value": 1})
        assert r.status_code == 201 and r.json()["created_by"] == "member-key"
    with api_client(settings, "wrong") as stranger:
        assert stranger.get("/api/evals").status_code == 401


# --- evaluators on a run -------------------------------------------------------------------


def test_run_evaluators_and_the_llm_judge_through_the_api(client, fake_mistral):
    run_id = finished_run(client, fake_mistral, "Paris is the capital.")
    fake_mistral.add(Reply(text="5 - correct and complete."))
    r = client.post(
        "/api/evals/run",
        json={
            "run_id": run_id,
            "expected": "Paris",
            "evaluators": [
                "contains",
                "exact_match",
                {"name": "regex", "params": {"pattern": "^Paris"}},
                {"name": "latency_budget", "params": {"max_ms": 60000}},
                "tool_call_success",
                "llm_judge",
            ],
        },
    )
    assert r.status_code == 201, r.text
    rows = {e["metric"]: e for e in r.json()["evaluations"]}
    assert rows["contains"]["passed"] is True and rows["exact_match"]["passed"] is False
    assert rows["regex"]["passed"] is True and rows["latency_ms"]["passed"] is True
    assert rows["tool_call_success"]["value"] == 1.0
    judge = rows["llm_judge"]
    assert judge["source"] == "llm-judge" and judge["value"] == 5 and judge["passed"] is True
    assert judge["details"]["model"] == MISTRAL_MODEL and judge["details"]["provider"] == "mistral"
    # The judge was asked through the provider, with the question, reference and answer.
    judged = fake_mistral.requests[-1]
    assert (
        judged["temperature"] == 0
        and "Reference answer:\nParis" in judged["messages"][1]["content"]
    )
    assert all(e["source"] == "heuristic" for m, e in rows.items() if m != "llm_judge")

    for body, message in [
        ({"run_id": run_id, "evaluators": ["bleu"]}, "unknown evaluator"),
        ({"run_id": run_id, "evaluators": []}, '"key":"evaluators"'),
        ({"run_id": run_id, "evaluators": [{"name": "regex"}]}, "needs pattern"),
        (
            {"run_id": run_id, "evaluators": [{"name": "llm_judge", "params": {"model": 5}}]},
            "model must be a string",
        ),
        (
            {"run_id": run_id, "evaluators": [{"name": "llm_judge", "params": {"pass_at": 9}}]},
            "pass_at",
        ),
    ]:
        r = client.post("/api/evals/run", json=body)
        assert r.status_code == 400, (body, r.text)
        if message:
            assert message in r.text
    assert (
        client.post(
            "/api/evals/run", json={"run_id": "nope", "evaluators": ["contains"]}
        ).status_code
        == 404
    )


def test_a_judge_without_a_score_is_recorded_as_unparsed(client, fake_mistral):
    run_id = finished_run(client, fake_mistral)
    fake_mistral.add(Reply(text="It is a fine answer overall."))
    r = client.post("/api/evals/run", json={"run_id": run_id, "evaluators": ["llm_judge"]})
    [row] = r.json()["evaluations"]
    assert row["label"] == "unparsed" and row["value"] is None and row["passed"] is None
    assert "fine answer" in row["details"]["raw"]
    fake_mistral.add(Reply(status=400))
    [row] = client.post(
        "/api/evals/run", json={"run_id": run_id, "evaluators": ["llm_judge"]}
    ).json()["evaluations"]
    assert row["label"] == "error" and row["passed"] is None


# --- by hand on the run page ---------------------------------------------------------------


def test_score_a_run_by_hand_with_htmx(page_client, fake_mistral, keys):
    client = page_client
    run_id = finished_run(client, fake_mistral, key=keys["admin"])
    page = soup(client.get(f"/runs/{run_id}"))
    form = page.select_one("#run-evals form#score-form")
    assert form["hx-post"] == f"/runs/{run_id}/evals"
    assert {b.get("value") for b in form.select("button[name=thumb]")} == {"up", "down"}
    assert [i["value"] for i in form.select("input[name=score]")] == ["1", "2", "3", "4", "5"]
    assert page.select_one("#run-evals .empty").text == "Not evaluated yet."

    headers = {"HX-Request": "true", "x-csrftoken": csrf(client)}
    r = client.post(
        f"/runs/{run_id}/evals",
        headers=headers,
        data={
            "thumb": "up",
            "score": "5",
            "comment": "Spot on",
            "correction": "Paris is the capital of France.",
        },
    )
    assert r.status_code == 200 and "<html" not in r.text
    frag = soup(r)
    assert frag.select_one("#run-evals .form-ok").text == "Saved."
    rows = frag.select("#run-evals tr.eval-row")
    assert [row.select_one("code").text for row in rows] == ["correction", "score", "thumbs"]
    stored = client.get(f"/api/evals?run_id={run_id}").json()["evaluations"]
    by_metric = {e["metric"]: e for e in stored}
    assert by_metric["thumbs"]["value"] == 1 and by_metric["thumbs"]["passed"] is True
    assert by_metric["thumbs"]["comment"] == "Spot on" and by_metric["thumbs"]["source"] == "human"
    assert by_metric["score"]["value"] == 5 and by_metric["score"]["passed"] is True
    assert by_metric["correction"]["label"] == "Paris is the capital of France."
    assert by_metric["score"]["created_by"] == "admin-key"

    r = client.post(f"/runs/{run_id}/evals", headers=headers, data={"thumb": "down"})
    assert soup(r).select_one("tr.eval-row .verdict-fail") is not None

    # Nothing chosen, or a made-up score: a 422 with the form and its message.
    r = client.post(f"/runs/{run_id}/evals", headers=headers, data={"comment": "hmm"})
    assert (
        r.status_code == 422 and "pick thumbs up or down" in soup(r).select_one(".form-error").text
    )
    assert soup(r).select_one("#eval-comment").text == "hmm"
    r = client.post(f"/runs/{run_id}/evals", headers=headers, data={"score": "11"})
    assert r.status_code == 422 and "score" in soup(r).select_one(".form-error").text
    # Without a CSRF token the form is refused.
    r = client.post(f"/runs/{run_id}/evals", data={"thumb": "up"}, headers={"HX-Request": "true"})
    assert r.status_code == 403
    assert client.post("/runs/nope/evals", headers=headers, data={"thumb": "up"}).status_code == 404


def test_run_an_evaluator_from_the_run_page(page_client, fake_mistral, keys):
    client = page_client
    run_id = finished_run(client, fake_mistral, "The answer is 42.", key=keys["admin"])
    headers = {"HX-Request": "true", "x-csrftoken": csrf(client)}
    r = client.post(
        f"/runs/{run_id}/evals/auto",
        headers=headers,
        data={"evaluator": "regex", "argument": r"\b42\b"},
    )
    assert r.status_code == 200, r.text
    assert "regex recorded." in r.text and soup(r).select_one("tr.eval-row .verdict-pass")
    r = client.post(
        f"/runs/{run_id}/evals/auto",
        headers=headers,
        data={"evaluator": "exact_match", "argument": "The answer is 42."},
    )
    assert soup(r).select("tr.eval-row .verdict-pass")
    r = client.post(
        f"/runs/{run_id}/evals/auto",
        headers=headers,
        data={"evaluator": "regex", "argument": "(oops"},
    )
    assert (
        r.status_code == 422
        and "invalid pattern" in soup(r).select_one(".auto-eval .form-error").text
    )


def test_viewer_cannot_score_from_the_page(settings, keys, fake_mistral):
    from litestar.testing import TestClient

    from app.main import create_app
    from tests.conftest import login

    with api_client(settings, keys["admin"]) as admin:
        run_id = finished_run(admin, fake_mistral)
    with TestClient(create_app(settings)) as client:
        login(client, keys["viewer"])
        page = soup(client.get(f"/runs/{run_id}"))
        assert page.select_one("#score-form") is None and "member role" in page.text
        r = client.post(f"/runs/{run_id}/evals", data={"thumb": "up", "_csrf_token": csrf(client)})
        assert r.status_code == 403


# --- dashboards ----------------------------------------------------------------------------


def _seed(settings) -> None:
    """Runs and evaluations spread over the last days, two models and two sessions."""
    store = Store(settings.db_path, url=settings.database_url)
    now = time.time()
    for i in range(12):
        run_id = f"seed{i:02d}"
        started = now - (i % 6) * 86400 - 60
        store.write_sync(
            create_run,
            {
                "id": run_id,
                "status": "failed" if i % 4 == 0 else "succeeded",
                "prompt": f"p{i}",
                "model": "mistral-small-latest" if i % 2 else "smollm2-135m",
                "session_id": "alpha" if i % 3 else "beta",
                "started_at": started,
                "latency_ms": 400 + 100 * i,
                "input_tokens": 100 + i,
                "output_tokens": 20 + i,
                "cost_usd": 0.0001 * i,
                "cost_status": "priced",
            },
        )

        def add(db, run_id=run_id, i=i, started=started):
            for metric, value, passed in (
                ("score", 1 + i % 5, int(i % 5 >= 3)),
                ("exact_match", float(i % 2), i % 2),
            ):
                db["evaluations"].insert(
                    {
                        "run_id": run_id,
                        "metric": metric,
                        "value": value,
                        "passed": passed,
                        "source": "api",
                        "created_at": started + 30,
                    }
                )

        store.write_sync(add)
    store.close()


def test_eval_dashboard_has_charts_and_breakdowns(settings, keys):
    _seed(settings)
    with api_client(settings, keys["viewer"]) as client:
        page = soup(client.get("/evals"))
        assert page.select_one("nav a[aria-current=page]").text == "Evals"
        success = page.select_one("#chart-success svg")
        assert success is not None and success["role"] == "img"
        assert len(success.select("circle.dot")) >= 6  # points on several days
        titles = [f.select_one(".chart-title").text for f in page.select("figure.chart")]
        assert titles == ["Success rate", "exact_match", "score"]
        models = [r.select_one("td").text.strip() for r in page.select("#by-model tbody tr")]
        assert set(models) == {"mistral-small-latest", "smollm2-135m"}
        assert {r.select_one("td").text.strip() for r in page.select("#by-session tbody tr")} == {
            "alpha",
            "beta",
        }
        assert len(page.select("#recent-evals tbody tr")) == 24
        # Filtered to one model, and other ranges.
        filtered = soup(client.get("/evals?model=smollm2-135m&range=30d"))
        assert "model smollm2-135m" in filtered.select_one("h1").text
        assert len(filtered.select("#chart-success .tick")) > 5
        assert client.get("/evals?range=24h").status_code == 200
        assert client.get("/evals?range=1y").status_code == 400
        summary = client.get("/api/evals/summary?range=7d").json()
        assert {g["g"] for g in summary["by_model"]} == {"mistral-small-latest", "smollm2-135m"}
        assert [m["title"] for m in summary["metrics"]] == ["exact_match", "score"]
        assert client.get("/api/evals/summary?range=1y").status_code == 400


def test_dashboard_charts_runs_tokens_cost_latency(settings, keys):
    _seed(settings)
    with api_client(settings, keys["viewer"]) as client:
        page = soup(client.get("/"))
        charts = page.select("#dashboard-charts figure.chart")
        assert [c.select_one(".chart-title").text for c in charts] == [
            "Runs",
            "Tokens",
            "Cost (USD)",
            "Latency",
        ]
        runs = page.select_one("#chart-runs svg")
        assert len(runs.select("rect.bar.ok")) == 6 and len(runs.select("rect.bar.bad")) >= 1
        assert "12 in range" in page.select_one("#chart-runs .chart-total").text
        latency = page.select_one("#chart-latency")
        assert [k.text for k in latency.select(".legend .key")] == ["p50", "p95"]
        assert latency.select("circle.dot.s1")
        assert page.select_one(".range-picker a[aria-current]").text == "7d"
        assert client.get("/?range=90d").status_code == 200
        assert client.get("/?range=forever").status_code == 400
        # Nothing is drawn with inline styles (the CSP forbids them).
        assert not page.select("[style]")


def test_without_javascript_an_evaluation_returns_to_the_run_page(page_client, fake_mistral, keys):
    """Issue 16: a plain form post (no HX-Request) is redirected (303) to the full run page
    at its evaluations card; a refused one gets a whole error page, never the bare fragment."""
    client = page_client
    run_id = finished_run(client, fake_mistral, "The answer is 42.", key=keys["admin"])
    token = csrf(client)
    r = client.post(
        f"/runs/{run_id}/evals",
        data={"thumb": "up", "_csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/runs/{run_id}#run-evals"
    r = client.post(
        f"/runs/{run_id}/evals/auto",
        data={"evaluator": "regex", "argument": r"\b42\b", "_csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/runs/{run_id}#run-evals"
    page = client.get(r.headers["location"])
    assert "<html" in page.text and soup(page).select_one("link[rel=stylesheet]")
    metrics = [c.text for c in soup(page).select("#run-evals tr.eval-row code")]
    assert sorted(metrics) == ["regex", "thumbs"]

    for path, data, message in [
        ("evals", {"comment": "hmm"}, "pick thumbs up or down"),
        ("evals/auto", {"evaluator": "regex", "argument": "(oops"}, "invalid pattern"),
    ]:
        r = client.post(f"/runs/{run_id}/{path}", data={**data, "_csrf_token": token})
        assert r.status_code == 422 and "<html" in r.text, r.text[:200]
        assert message in soup(r).select_one("main").text
    # htmx still gets the fragment alone.
    r = client.post(
        f"/runs/{run_id}/evals",
        data={"thumb": "down"},
        headers={"HX-Request": "true", "x-csrftoken": token},
    )
    assert r.status_code == 200 and "<html" not in r.text and soup(r).select_one("#run-evals")
