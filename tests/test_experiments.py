"""Datasets and experiments: uploads, runs picked into a dataset, experiments on the fake
Mistral server and on the real local model, bounded concurrency, live progress, comparison."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup

from app.auth.keys import create_key
from app.core.settings import Settings
from app.experiments.datasets import create_dataset
from app.experiments.queries import FINISHED, create_experiment
from app.store import Store
from tests.conftest import LOCAL_MODEL, MISTRAL_MODEL, agent_config, api_client, csrf, wait_for_run
from tests.fake_mistral import Reply
from tests.receivers import wait_until
from tests.test_sse import iter_sse

pytestmark = pytest.mark.both_backends

ITEMS = [
    {"input": "alpha", "expected": "Echo: alpha"},  # the fake server echoes: exact match
    {"input": "beta", "expected": "beta"},  # contained, not exact
    {"input": "gamma", "expected": "Echo: gamma"},
    {"input": "delta", "expected": "omega"},  # wrong
    {"input": "epsilon", "topic": "greek"},  # nothing expected: no verdict
]


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


def make_dataset(client, items=ITEMS, name="greek letters") -> dict[str, Any]:
    r = client.post("/api/datasets", json={"name": name, "items": items})
    assert r.status_code == 201, r.text
    return r.json()


def wait_experiment(client, experiment_id: int, timeout: float = 60.0) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/experiments/{experiment_id}").json()
        return body if body["status"] in FINISHED else None

    return wait_until(ended, timeout, f"experiment {experiment_id} to finish")


# --- datasets ------------------------------------------------------------------------------


def test_datasets_from_items_csv_and_jsonl(client):
    ds = make_dataset(client)
    assert ds["item_count"] == 5 and ds["source"] == "api"
    items = client.get(f"/api/datasets/{ds['id']}").json()["items"]
    assert [i["input"] for i in items] == ["alpha", "beta", "gamma", "delta", "epsilon"]
    assert items[4]["expected"] is None and items[4]["metadata"] == {"topic": "greek"}

    csv_text = 'question,answer,difficulty\nWhat is 2+2?,4,easy\n"Say ""hi""",hi,easy\n'
    r = client.post("/api/datasets", json={"name": "csv", "content": csv_text, "format": "csv"})
    assert r.status_code == 201, r.text
    items = client.get(f"/api/datasets/{r.json()['id']}").json()["items"]
    assert [(i["input"], i["expected"]) for i in items] == [
        ("What is 2+2?", "4"),
        ('Say "hi"', "hi"),
    ]
    assert items[0]["metadata"] == {"difficulty": "easy"}

    jsonl = '{"prompt": "a", "expected": {"k": 1}}\n\n{"input": "b"}\n'
    r = client.post("/api/datasets", json={"name": "jsonl", "content": jsonl})
    items = client.get(f"/api/datasets/{r.json()['id']}").json()["items"]
    assert [(i["input"], i["expected"]) for i in items] == [("a", '{"k": 1}'), ("b", None)]
    assert [d["name"] for d in client.get("/api/datasets").json()["datasets"]] == [
        "jsonl",
        "csv",
        "greek letters",
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"name": "x", "items": []}, '"key":"items"'),
        ({"name": "x", "items": [{"expected": "y"}]}, "item 1: no input"),
        ({"name": "x", "items": [{"input": "  "}]}, "input must be a non-empty string"),
        ({"name": "x", "items": [{"input": 5}]}, "input must be a non-empty string"),
        ({"name": "x", "items": ["just text"]}, "Expected `object`, got `str`"),
        ({"name": "x", "items": [{"input": "a"}] * 1001}, "length <= 1000"),
        ({"name": "", "items": [{"input": "a"}]}, '"key":"name"'),
        ({"name": "x"}, "give items"),
        ({"name": "x", "items": [{"input": "a"}], "content": "input\na"}, "not both"),
        (
            {"name": "x", "content": "prompt_text,foo\na,b", "format": "csv"},
            "needs an input column",
        ),
        ({"name": "x", "content": "", "format": "csv"}, "empty"),
        ({"name": "x", "content": '{"input": "a"}\n{oops'}, "line 2: not valid JSON"),
        ({"name": "x", "content": 'input\n"a"\n""\n', "format": "csv"}, "row 3"),
        ({"name": "x", "content": "input\na", "format": "xml"}, "Invalid enum value 'xml'"),
    ],
)
def test_bad_datasets_are_400_with_a_message(client, body, message):
    r = client.post("/api/datasets", json=body)
    assert r.status_code == 400, r.text
    assert message in r.text


def test_dataset_from_runs_prefers_the_human_correction(client, fake_mistral):
    fake_mistral.add(Reply(text="Lyon"), Reply(text="Four"))
    ids = []
    for prompt in ("Capital of France?", "2+2?"):
        run_id = client.post(
            "/api/runs", json={"prompt": prompt, "model": MISTRAL_MODEL, "tools": []}
        ).json()["run_id"]
        wait_for_run(client, run_id)
        ids.append(run_id)
    client.post(
        "/api/evals",
        json={"run_id": ids[0], "metric": "correction", "label": "Paris", "source": "human"},
    )
    r = client.post("/api/datasets/from-runs", json={"name": "from runs", "run_ids": ids + ids})
    assert r.status_code == 201 and r.json()["source"] == "runs"
    items = client.get(f"/api/datasets/{r.json()['id']}").json()["items"]
    assert [(i["input"], i["expected"]) for i in items] == [
        ("Capital of France?", "Paris"),
        ("2+2?", "Four"),
    ]
    assert items[0]["metadata"]["run_id"] == ids[0]
    r = client.post("/api/datasets/from-runs", json={"name": "x", "run_ids": ["nope"]})
    assert r.status_code == 400 and "run 'nope' not found" in r.text
    assert (
        client.post("/api/datasets/from-runs", json={"name": "x", "run_ids": []}).status_code == 400
    )


def test_upload_page_and_pick_runs_page(page_client, fake_mistral, keys):
    client = page_client
    page = soup(client.get("/datasets"))
    assert page.select_one("#upload-form")["enctype"] == "multipart/form-data"
    csv_bytes = b"input,expected\nHello,Echo: Hello\nBye,Echo: Bye\n"
    r = client.post(
        "/datasets",
        data={"name": "uploaded", "_csrf_token": csrf(client)},
        files={"file": ("cases.csv", csv_bytes, "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    ds_page = soup(client.get(r.headers["location"]))
    assert "uploaded" in ds_page.select_one("h1").text
    assert len(ds_page.select("#items-table tbody tr")) == 2
    form = ds_page.select_one("#experiment-form")
    assert {i["value"] for i in form.select("input[name=evaluators]")} >= {
        "exact_match",
        "contains",
        "regex",
        "valid_json",
        "tool_call_success",
        "latency_budget",
        "cost_budget",
        "llm_judge",
    }
    # A bad file is a 422 with the message, on the same page.
    r = client.post(
        "/datasets",
        data={"name": "bad", "_csrf_token": csrf(client)},
        files={"file": ("x.jsonl", b"{nope", "application/json")},
    )
    assert (
        r.status_code == 422 and "line 1: not valid JSON" in soup(r).select_one(".form-error").text
    )

    fake_mistral.add(Reply(text="Hi there"))
    run_id = client.post(
        "/api/runs",
        json={"prompt": "Say hi", "model": MISTRAL_MODEL},
        headers={"X-API-Key": keys["admin"]},
    ).json()["run_id"]
    wait_for_run(client, run_id)
    page = soup(client.get("/datasets"))
    assert page.select_one(f"#from-runs-form input[value='{run_id}']") is not None
    r = client.post(
        "/datasets/from-runs",
        data={"name": "picked", "run_ids": [run_id], "_csrf_token": csrf(client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = client.post("/datasets/from-runs", data={"name": "none", "_csrf_token": csrf(client)})
    assert r.status_code == 422 and "run_ids" in soup(r).select_one(".form-error").text


# --- experiments on the fake Mistral server ------------------------------------------------


def test_experiment_over_five_items_with_fake_mistral(client, fake_mistral):
    ds = make_dataset(client)
    r = client.post(
        "/api/experiments",
        json={
            "dataset_id": ds["id"],
            "name": "echo baseline",
            "config": {"model": MISTRAL_MODEL, "temperature": 0.1, "tools": [], "max_tokens": 50},
            "evaluators": ["exact_match", "contains", "tool_call_success"],
            "concurrency": 2,
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "queued" and created["total"] == 5
    assert created["config"]["temperature"] == 0.1 and created["config"]["tools"] == []

    done = wait_experiment(client, created["id"])
    assert done["status"] == "succeeded", done
    # Item 5 has nothing to compare with, so only tool-call success judges it.
    assert (done["done"], done["failed"], done["scored"], done["passed"]) == (5, 0, 5, 3)
    assert [i["status"] for i in done["items"]] == ["succeeded"] * 5
    assert [i["output"] for i in done["items"]] == [f"Echo: {x['input']}" for x in ITEMS]
    assert [i["passed"] for i in done["items"]] == [1, 0, 1, 0, 1]
    first = {e["metric"]: e["passed"] for e in done["items"][0]["evaluations"]}
    assert first == {"exact_match": 1, "contains": 1, "tool_call_success": 1}
    last = {e["metric"]: e["label"] for e in done["items"][4]["evaluations"]}
    assert last == {"exact_match": "skipped", "contains": "skipped", "tool_call_success": "pass"}
    summary = {m["metric"]: m for m in done["metrics"]}
    assert summary["exact_match"]["pass_rate"] == 0.5 and summary["contains"]["judged"] == 4
    # Every item is a real run, recorded like any other, with the configuration applied.
    run = client.get(f"/api/runs/{done['items'][0]['run_id']}").json()["run"]
    assert run["source"] == "experiment" and run["params"]["temperature"] == 0.1
    sent = [b for b in fake_mistral.requests if b["messages"][-1]["content"] == "alpha"]
    assert sent and sent[0]["max_tokens"] == 50
    evals = client.get(f"/api/evals?run_id={run['id']}").json()["evaluations"]
    assert {e["source"] for e in evals} == {"heuristic"}

    page = soup(client.get(f"/experiments/{created['id']}"))
    assert page.select_one("[sse-connect]") is None  # finished: nothing to stream
    assert page.select_one("#exp-progress-bar")["value"] == "5"
    assert len(page.select("#exp-items tbody tr")) == 5
    assert "60%" in page.select_one("#exp-progress").text  # 3 of 5 items passed
    listing = soup(client.get("/experiments"))
    assert "echo baseline" in listing.select_one("#experiments-table").text


def test_concurrency_is_bounded(client, fake_mistral):
    fake_mistral.add(
        *[Reply(text="slow answer here", chunk_size=2, delay_s=0.03) for _ in range(6)]
    )
    ds = make_dataset(client, [{"input": f"q{i}"} for i in range(6)])
    exp = client.post(
        "/api/experiments",
        json={
            "dataset_id": ds["id"],
            "config": {"model": MISTRAL_MODEL, "tools": []},
            "evaluators": [],
            "concurrency": 2,
        },
    ).json()
    done = wait_experiment(client, exp["id"])
    runs = [client.get(f"/api/runs/{i['run_id']}").json()["run"] for i in done["items"]]
    spans = [(r["started_at"], r["ended_at"]) for r in runs]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2  # overlapping, but never more than two at once


def test_bad_experiments_are_400(client):
    ds = make_dataset(client)
    for body, message in [
        ({"dataset_id": 999}, "dataset 999 not found"),
        ({"dataset_id": ds["id"], "config": {"temperature": 5}}, "temperature"),
        ({"dataset_id": ds["id"], "config": {"tools": ["rm_rf"]}}, "unknown tool"),
        ({"dataset_id": ds["id"], "config": {"tools": "rm_rf"}}, "unknown tool"),
        ({"dataset_id": ds["id"], "config": {"max_tokens": 40000}}, '"key":"config.max_tokens"'),
        ({"dataset_id": ds["id"], "config": {"colour": "red"}}, "unknown field `colour`"),
        ({"dataset_id": ds["id"], "evaluators": ["bleu"]}, "unknown evaluator"),
        ({"dataset_id": ds["id"], "evaluators": [{"name": "latency_budget"}]}, "needs max_ms"),
        ({"dataset_id": ds["id"], "concurrency": 0}, '"key":"concurrency"'),
        ({"dataset_id": ds["id"], "concurrency": 99}, '"key":"concurrency"'),
        ({"dataset_id": "x"}, ""),
    ]:
        r = client.post("/api/experiments", json=body)
        assert r.status_code == 400, (body, r.text)
        assert message in r.text
    assert client.get("/api/experiments").json()["experiments"] == []
    assert client.get("/api/experiments/5").status_code == 404


def omega_against_echo(
    client: Any, fake_mistral: Any, evaluators: list[Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two finished experiments on one dataset: A as the fake answers by default,
    B answering "omega" to every item."""
    ds = make_dataset(client)
    base = {
        "dataset_id": ds["id"],
        "evaluators": evaluators,
        "concurrency": 1,
        "config": {"model": MISTRAL_MODEL, "tools": []},
    }
    a = client.post("/api/experiments", json={**base, "name": "A"}).json()
    wait_experiment(client, a["id"])
    fake_mistral.add(*[Reply(text="omega") for _ in ITEMS])
    b = client.post("/api/experiments", json={**base, "name": "B"}).json()
    wait_experiment(client, b["id"])
    return a, b


def test_compare_two_experiments_item_by_item(client, fake_mistral):
    # B answers "omega" to everything: item 4 gets better, items 1 and 3 worse.
    a, b = omega_against_echo(client, fake_mistral, ["exact_match"])

    body = client.get(f"/api/experiments/compare?a={a['id']}&b={b['id']}").json()
    assert [row["change"] for row in body["rows"]] == [
        "worse",
        "same",
        "worse",
        "better",
        "unknown",
    ]
    [metric] = body["metrics"]
    assert metric["a"]["pass_rate"] == 0.5 and metric["b"]["pass_rate"] == 0.25

    page = soup(client.get(f"/experiments/compare?a={a['id']}&b={b['id']}"))
    rows = page.select("#compare-items tbody tr")
    assert [r["class"][0] for r in rows] == [
        "change-worse",
        "change-same",
        "change-worse",
        "change-better",
        "change-unknown",
    ]
    assert "Echo: alpha" in rows[0].select("td.output")[0].text
    assert "omega" in rows[0].select("td.output")[1].text
    assert page.select_one("#compare-summary").text.count("exact_match") == 1
    # The experiment page offers the comparison; other datasets cannot be compared.
    assert soup(client.get(f"/experiments/{a['id']}")).select_one("#compare-form select option")
    other = make_dataset(client, [{"input": "z"}], name="other")
    config = {"model": MISTRAL_MODEL, "tools": []}
    c = client.post(
        "/api/experiments",
        json={"dataset_id": other["id"], "evaluators": ["exact_match"], "config": config},
    ).json()
    wait_experiment(client, c["id"])
    r = client.get(f"/api/experiments/compare?a={a['id']}&b={c['id']}")
    assert r.status_code == 400 and "different datasets" in r.text
    assert client.get(f"/experiments/compare?a={a['id']}&b=999").status_code == 404


def test_start_from_the_dataset_page_and_watch_progress_live(live_server, fake_mistral, keys):
    headers = {"X-API-Key": keys["admin"]}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=10) as http:
        ds = make_dataset(http)
        fake_mistral.add(
            *[Reply(text="a slower answer", chunk_size=1, delay_s=0.03) for _ in ITEMS]
        )
        # The form, as a browser posts it (cookie session + CSRF token).
        with httpx.Client(base_url=live_server.url, timeout=10) as browser:
            browser.get("/login")
            browser.post(
                "/login",
                data={
                    "key": keys["member"],
                    "next": "/",
                    "_csrf_token": browser.cookies["csrftoken"],
                },
            )
            r = browser.post(
                "/experiments",
                data={
                    "_csrf_token": browser.cookies["csrftoken"],
                    "dataset_id": str(ds["id"]),
                    "model": MISTRAL_MODEL,
                    "temperature": "0.3",
                    "max_tokens": "40",
                    "tools_present": "1",
                    "concurrency": "2",
                    "evaluators": ["contains", "regex"],
                    "regex.pattern": "^a ",
                    "contains.text": "slower",
                },
            )
            assert r.status_code == 303, r.text
            experiment_id = int(r.headers["location"].rsplit("/", 1)[1])
            page = soup(browser.get(f"/experiments/{experiment_id}"))
            assert page.select_one("[sse-connect]")["sse-connect"] == (
                f"/experiments/{experiment_id}/events"
            )

        progress, ended = [], False
        with http.stream("GET", f"/experiments/{experiment_id}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in iter_sse(response):
                if event.event == "stream_end":
                    ended = True
                    break
                assert event.event == "experiment_progress"
                bar = soup(httpx.Response(200, text=event.data)).select_one("#exp-progress-bar")
                progress.append(int(bar["value"]))
        assert ended
        assert progress == sorted(progress) and progress[-1] == 5
        assert len(set(progress)) >= 3  # it moved while we watched, not only at the end
        done = http.get(f"/api/experiments/{experiment_id}").json()
        assert done["status"] == "succeeded" and done["passed"] == 5
        assert done["evaluators"] == [
            {"name": "contains", "params": {"text": "slower"}},
            {"name": "regex", "params": {"pattern": "^a "}},
        ]
        assert done["created_by"] == "member-key" and done["config"]["temperature"] == 0.3


def test_unfinished_experiments_are_interrupted_on_start(settings, keys):
    store = Store(settings.db_path, url=settings.database_url)
    ds = store.write_sync(create_dataset, "d", [{"input": "a"}], "api")
    row = {"dataset_id": ds["id"], "config": {"model": "m"}, "evaluators": [], "concurrency": 1}
    exp = store.write_sync(create_experiment, row)
    store.close()
    with api_client(settings, keys["viewer"]) as client:
        body = client.get(f"/api/experiments/{exp['id']}").json()
        assert body["status"] == "interrupted" and "server stopped" in body["error"]
        assert body["items"][0]["status"] == "failed"


def test_stopping_the_server_mid_experiment_interrupts_it(settings, keys, fake_mistral):
    fake_mistral.add(*[Reply(text="slow " * 20, chunk_size=1, delay_s=0.05) for _ in ITEMS])
    with api_client(settings, keys["admin"]) as client:
        ds = make_dataset(client)
        exp = client.post(
            "/api/experiments",
            json={
                "dataset_id": ds["id"],
                "config": {"model": MISTRAL_MODEL, "tools": []},
                "concurrency": 1,
            },
        ).json()
        wait_until(
            lambda: client.get(f"/api/experiments/{exp['id']}").json()["status"] == "running",
            10,
            "the experiment to start",
        )
    with api_client(settings, keys["admin"]) as client:
        body = client.get(f"/api/experiments/{exp['id']}").json()
        assert body["status"] == "interrupted" and "stopped" in body["error"]
        assert {i["status"] for i in body["items"]} <= {"failed", "succeeded"}
        assert any(i["error"] == "interrupted" for i in body["items"])


# --- the real local model ------------------------------------------------------------------


@pytest.mark.local_model
def test_experiment_on_the_local_model_with_the_local_judge(tmp_path):
    """No Mistral key: runs and the LLM judge both use SmolLM2 through the Runner's provider."""
    settings = Settings(data_dir=tmp_path / "local", agent_config=agent_config(None))
    store = Store(settings.db_path, url=settings.database_url)
    key = store.write_sync(create_key, "admin", "admin")[1]
    store.close()
    with api_client(settings, key) as client:
        ds = make_dataset(
            client, [{"input": f"Name a colour. {i}", "expected": "colour"} for i in range(5)]
        )
        r = client.post(
            "/api/experiments",
            json={
                "dataset_id": ds["id"],
                "config": {"max_tokens": 8, "tools": [], "temperature": 0},
                "evaluators": [
                    "contains",
                    {"name": "latency_budget", "params": {"max_ms": 600000}},
                    {"name": "llm_judge", "params": {"max_tokens": 8}},
                ],
                "concurrency": 2,
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["config"]["model"] == LOCAL_MODEL  # the default without a key
        done = wait_experiment(client, r.json()["id"], timeout=240)
        assert done["status"] == "succeeded" and done["done"] == 5 and done["failed"] == 0
        for item in done["items"]:
            assert item["output"].strip()
            run = client.get(f"/api/runs/{item['run_id']}").json()["run"]
            assert run["provider"] == "local" and 0 < run["output_tokens"] <= 8
            metrics = {e["metric"]: e for e in item["evaluations"]}
            assert set(metrics) == {"contains", "latency_ms", "llm_judge"}
            assert metrics["latency_ms"]["passed"] == 1
            judge = metrics["llm_judge"]
            assert judge["label"] == "unparsed" or judge["label"] in {f"{n}/5" for n in range(1, 6)}
        judged = client.get(f"/api/evals?run_id={done['items'][0]['run_id']}&metric=llm_judge")
        details = judged.json()["evaluations"][0]["details"]
        assert details["provider"] == "local" and details["model"] == LOCAL_MODEL
        assert 0 < details["output_tokens"] <= 8
        assert json.dumps(details)  # stored as JSON


def test_compare_reads_each_evaluator_so_a_flip_is_never_same(client, fake_mistral):
    """Issue 16: with two evaluators an item can stay "fail" overall while one evaluator
    flips from fail to pass; that is B better, not "same" (and both ways is "mixed")."""
    evaluators = ["exact_match", {"name": "contains", "params": {"text": "omega"}}]
    a, b = omega_against_echo(client, fake_mistral, evaluators)

    body = client.get(f"/api/experiments/compare?a={a['id']}&b={b['id']}").json()
    # alpha: exact_match pass -> fail, contains fail -> pass; beta: fail overall on both
    # sides, but contains went from fail to pass.
    assert [row["change"] for row in body["rows"]] == [
        "mixed",
        "better",
        "mixed",
        "better",
        "better",
    ]
    beta = body["rows"][1]
    assert beta["a"]["passed"] == 0 and beta["b"]["passed"] == 0  # the item verdict did not move
    assert beta["flips"] == [{"metric": "contains", "a": False, "b": True}]
    assert {f["metric"]: (f["a"], f["b"]) for f in body["rows"][0]["flips"]} == {
        "contains": (False, True),
        "exact_match": (True, False),
    }

    page = soup(client.get(f"/experiments/compare?a={a['id']}&b={b['id']}"))
    rows = page.select("#compare-items tbody tr")
    change = rows[1].select("td")[-1]
    assert change.select_one(".change").text == "B better"
    assert " ".join(change.select_one(".flips").text.split()) == "contains fail → pass"
    assert rows[0].select_one(".change").text == "mixed"
    assert "same" not in [r.select_one(".change").text for r in rows]
