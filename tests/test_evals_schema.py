"""One validation for evaluations, datasets and experiments: the OpenAPI schema describes
bodies and answers, the answers have exactly the keys the schema names, and a page's form
and the JSON API refuse the same bad input naming the same field."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.conftest import csrf
from tests.test_evals import finished_run


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its ``$ref`` followed."""
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def body_schema(spec: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    content = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
    return resolve(spec, content["schema"])


def answer_schema(spec: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    responses = spec["paths"][path][method]["responses"]
    ok = responses.get("200") or responses["201"]
    return resolve(spec, ok["content"]["application/json"]["schema"])


def properties(spec: dict[str, Any], path: str, method: str = "get") -> set[str]:
    return set(answer_schema(spec, path, method)["properties"])


@pytest.fixture
def spec(client) -> dict[str, Any]:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()


def test_evaluators_are_described_as_names_or_name_and_params(spec):
    evaluators = body_schema(spec, "/api/evals/run")["properties"]["evaluators"]
    assert evaluators["type"] == "array" and evaluators["maxItems"] == 12
    variants = [resolve(spec, v) for v in evaluators["items"]["oneOf"]]
    assert any(v.get("type") == "string" for v in variants)  # a bare name
    [spec_object] = [v for v in variants if v.get("type") == "object"]
    assert set(spec_object["properties"]) == {"name", "params"}
    assert spec_object["required"] == ["name"]
    # Experiments take the same evaluators.
    experiment = body_schema(spec, "/api/experiments")["properties"]["evaluators"]
    items = [resolve(spec, v) for v in experiment["oneOf"] if v.get("type") != "null"]
    assert items[0]["items"] == evaluators["items"]


def test_bodies_carry_their_constraints(spec):
    evaluation = body_schema(spec, "/api/evals")
    assert set(evaluation["required"]) == {"run_id", "metric"}
    assert evaluation["properties"]["source"]["enum"] == ["human", "api", "heuristic", "llm-judge"]
    experiment = body_schema(spec, "/api/experiments")["properties"]
    concurrency = experiment["concurrency"]
    assert (concurrency["minimum"], concurrency["maximum"]) == (1, 8)
    config = resolve(spec, next(v for v in experiment["config"]["oneOf"] if "$ref" in v))
    assert set(config["properties"]) == {
        "model",
        "temperature",
        "max_tokens",
        "system_prompt",
        "tools",
        "max_rounds",
    }
    dataset = body_schema(spec, "/api/datasets")["properties"]
    assert dataset["name"]["maxLength"] == 200


def test_answers_are_described_with_their_properties(spec):
    assert properties(spec, "/api/evals") == {"evaluations", "limit", "offset"}
    assert {"id", "run_id", "metric", "value", "passed", "details"} <= properties(
        spec, "/api/evals", "post"
    )
    recorded = answer_schema(spec, "/api/evals/run", "post")["properties"]["evaluations"]
    assert "metric" in resolve(spec, recorded["items"])["properties"]
    summary = properties(spec, "/api/evals/summary")
    assert summary == {"range", "success", "metrics", "by_model", "by_session", "runs"}
    success = resolve(spec, answer_schema(spec, "/api/evals/summary")["properties"]["success"])
    assert {"labels", "series", "ticks", "y_max"} <= set(success["properties"])
    assert {"id", "name", "item_count", "items"} <= properties(spec, "/api/datasets/{dataset_id}")
    assert properties(spec, "/api/datasets") == {"datasets"}
    assert {"id", "status", "config", "items", "metrics"} <= properties(
        spec, "/api/experiments/{experiment_id}"
    )
    assert properties(spec, "/api/experiments") == {"experiments"}
    assert properties(spec, "/api/experiments/compare") == {"a", "b", "rows", "metrics"}


def test_answers_have_exactly_the_described_keys(client, fake_mistral, spec):
    run_id = finished_run(client, fake_mistral)
    created = client.post("/api/evals", json={"run_id": run_id, "metric": "x", "label": "pass"})
    assert created.status_code == 201, created.text
    assert set(created.json()) == properties(spec, "/api/evals", "post")
    listed = client.get("/api/evals").json()["evaluations"][0]
    listed_schema = answer_schema(spec, "/api/evals")["properties"]["evaluations"]["items"]
    assert set(listed) == set(resolve(spec, listed_schema)["properties"])

    r = client.post("/api/datasets", json={"name": "d", "items": [{"input": "a", "k": 1}]})
    assert set(r.json()) == properties(spec, "/api/datasets", "post")
    detail = client.get(f"/api/datasets/{r.json()['id']}").json()
    assert set(detail) == properties(spec, "/api/datasets/{dataset_id}")
    assert detail["items"][0]["metadata"] == {"k": 1}

    summary = client.get("/api/evals/summary").json()
    assert set(summary["success"]) == set(
        resolve(spec, answer_schema(spec, "/api/evals/summary")["properties"]["success"])[
            "properties"
        ]
    )


def _form_error(response) -> str:
    error = BeautifulSoup(response.text, "html.parser").select_one(".form-error")
    assert error is not None, response.text[:2000]
    return error.text


def test_the_form_and_the_api_refuse_the_same_input_naming_the_same_field(
    page_client, keys, fake_mistral
):
    client = page_client
    api = {"X-API-Key": keys["admin"]}
    token = {"_csrf_token": csrf(client)}

    # A dataset name too long: the upload form and POST /api/datasets.
    long_name = "n" * 201
    r = client.post("/datasets", data={**token, "name": long_name, "content": "input\na\n"})
    assert r.status_code == 422 and _form_error(r).startswith("name: ")
    r = client.post("/api/datasets", json={"name": long_name, "content": "input\na\n"}, headers=api)
    assert r.status_code == 400 and r.json()["extra"][0]["key"] == "name"
    assert "length <= 200" in r.json()["extra"][0]["message"]

    # Too much concurrency: the dataset page's experiment form and POST /api/experiments.
    dataset = client.post(
        "/api/datasets", json={"name": "d", "items": [{"input": "a"}]}, headers=api
    ).json()
    form = {**token, "dataset_id": str(dataset["id"]), "concurrency": "99"}
    r = client.post("/experiments", data=form)
    assert r.status_code == 422 and _form_error(r) == "concurrency: expected int <= 8"
    r = client.post(
        "/api/experiments", json={"dataset_id": dataset["id"], "concurrency": 99}, headers=api
    )
    assert r.status_code == 400 and r.json()["extra"][0]["key"] == "concurrency"
    assert "<= 8" in r.json()["extra"][0]["message"]

    # No runs picked: the "pick runs" form and POST /api/datasets/from-runs.
    r = client.post("/datasets/from-runs", data={**token, "name": "picked"})
    assert r.status_code == 422 and "run_ids" in _form_error(r)
    r = client.post("/api/datasets/from-runs", json={"name": "picked"}, headers=api)
    assert r.status_code == 400 and "run_ids" in r.json()["extra"][0]["message"]

    # An evaluator nobody knows: the run page's form and POST /api/evals/run.
    run_id = finished_run(client, fake_mistral, key=keys["admin"])
    headers = {"HX-Request": "true", "x-csrftoken": csrf(client)}
    r = client.post(f"/runs/{run_id}/evals/auto", headers=headers, data={"evaluator": "bleu"})
    assert r.status_code == 422 and "unknown evaluator 'bleu'" in _form_error(r)
    r = client.post("/api/evals/run", json={"run_id": run_id, "evaluators": ["bleu"]}, headers=api)
    assert r.status_code == 400 and "unknown evaluator 'bleu'" in r.json()["detail"]
    # Nothing was recorded by any of these.
    assert client.get("/api/datasets", headers=api).json()["datasets"] == [dataset]
    assert client.get("/api/experiments", headers=api).json()["experiments"] == []
    assert client.get(f"/api/evals?run_id={run_id}", headers=api).json()["evaluations"] == []


def test_the_evaluator_shape_is_documented_and_shown_in_errors(spec, client, fake_mistral):
    """Issue 16: typed items with the known params, an example, and an error that shows
    the expected ``{"name", "params"}`` shape."""
    evaluators = body_schema(spec, "/api/evals/run")["properties"]["evaluators"]
    assert '{"name": "regex", "params": {"pattern": "..."}}' in evaluators["description"]
    [example] = evaluators["examples"]
    assert {"name": "latency_budget", "params": {"max_ms": 2000}} in example
    [spec_object] = [
        resolve(spec, v) for v in evaluators["items"]["oneOf"] if resolve(spec, v).get("properties")
    ]
    params = spec_object["properties"]["params"]["properties"]
    assert params["pattern"] == {"type": "string", "description": "regex: Pattern (required)"}
    assert params["max_ms"]["type"] == "number" and params["pass_at"]["type"] == "integer"

    run_id = finished_run(client, fake_mistral)
    for item, shape in [
        ({"name": "regex"}, '{"name": "regex", "params": {"pattern": "^\\\\d+$"}}'),
        (
            {"name": "cost_budget", "params": {}},
            '{"name": "cost_budget", "params": {"max_usd": 0.01}}',
        ),
    ]:
        r = client.post("/api/evals/run", json={"run_id": run_id, "evaluators": [item]})
        assert r.status_code == 400 and shape in r.json()["detail"], r.text
    # The documented example is a body the API takes.
    r = client.post("/api/evals/run", json={"run_id": run_id, "evaluators": example[:3]})
    assert r.status_code == 201, r.text
    assert [e["metric"] for e in r.json()["evaluations"]] == ["exact_match", "regex", "latency_ms"]
