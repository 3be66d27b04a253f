"""One validation for exports, fine-tuning and alerts: the OpenAPI schema shows each
request body's constraints and each response's shape, the JSON really has that shape,
and a page's form and its JSON API refuse the same bad input naming the same field."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.conftest import csrf
from tests.receivers import wait_until


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _request(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    body = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve(spec, body)


def _response(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    content = spec["paths"][path][method]["responses"][str(status)]["content"]
    return _resolve(spec, content["application/json"]["schema"])


def _items(spec: dict[str, Any], schema: dict[str, Any], name: str) -> dict[str, Any]:
    return _resolve(spec, schema["properties"][name]["items"])


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A property's schema; for ``X | None`` Litestar keeps the constraints beside ``oneOf``."""
    return schema["properties"][name]


@pytest.fixture
def spec(client) -> dict[str, Any]:
    return client.get("/schema/openapi.json").json()


def test_request_bodies_carry_their_constraints(spec):
    rule = _request(spec, "post", "/api/alerts/rules")
    assert set(rule["required"]) == {"name", "kind"}
    assert rule["properties"]["name"]["maxLength"] == 100
    assert rule["properties"]["kind"]["enum"] == ["run_cost", "window_cost", "baseline"]
    assert _field(rule, "window_s")["minimum"] == 1
    assert _field(rule, "window_s")["maximum"] == 90 * 86400
    assert _field(rule, "baseline_runs")["minimum"] == 3
    assert _field(rule, "threshold_usd")["maximum"] == 1e9

    export = _request(spec, "post", "/api/exports")
    assert export["required"] == ["kind"]
    assert export["properties"]["kind"]["enum"] == ["huggingface", "wandb", "finetune_jsonl"]
    assert export["properties"]["format"]["enum"] == ["parquet", "jsonl"]
    assert {"run_ids", "failed", "below", "repo", "push", "project"} <= set(export["properties"])

    finetune = _request(spec, "post", "/api/finetune")
    assert _field(finetune, "training_steps")["maximum"] == 100_000
    assert _field(finetune, "learning_rate")["maximum"] == 1.0
    assert finetune["properties"]["base_model"]["pattern"].startswith("^[A-Za-z0-9]")
    assert {"run_ids", "failed", "below", "suffix"} <= set(finetune["properties"])


def test_responses_are_described(spec):
    alerts = _response(spec, "get", "/api/alerts", 200)
    assert set(alerts["properties"]) == {"alerts", "rules", "errors"}
    assert "description" in _items(spec, alerts, "rules")["properties"]
    alert = _items(spec, alerts, "alerts")
    assert {"message", "value_usd", "rule_name", "deliveries"} <= set(alert["properties"])
    assert {"channel", "status", "attempts"} <= set(_items(spec, alert, "deliveries")["properties"])
    assert {"integration", "subject", "attempt", "final"} <= set(
        _items(spec, alerts, "errors")["properties"]
    )
    created = _response(spec, "post", "/api/alerts/rules", 201)
    assert {"id", "name", "kind", "enabled"} <= set(created["properties"])

    exports = _response(spec, "get", "/api/exports", 200)
    assert set(exports["properties"]) == {"exports", "errors"}
    one = _response(spec, "get", "/api/exports/{export_id}", 200)
    assert {"id", "kind", "status", "progress", "result", "error"} <= set(one["properties"])
    started = _response(spec, "post", "/api/exports", 202)
    assert set(started["properties"]) == {"export_id", "status", "export"}

    finetunes = _response(spec, "get", "/api/finetune", 200)
    assert set(finetunes["properties"]) == {"jobs", "models"}
    assert "fine_tuned_model" in _items(spec, finetunes, "jobs")["properties"]
    job = _response(spec, "get", "/api/finetune/{job_id}", 200)
    assert {"status", "mistral_job_id", "errors"} <= set(job["properties"])
    assert set(_response(spec, "post", "/api/finetune", 202)["properties"]) == {
        "job_id",
        "status",
        "export_id",
    }


def test_the_json_has_the_declared_shape(client, spec):
    r = client.post(
        "/api/alerts/rules",
        json={"name": "big", "kind": "run_cost", "threshold_usd": 0.5, "email_to": "a@x, b@y"},
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    assert set(rule) == set(_response(spec, "post", "/api/alerts/rules", 201)["properties"])
    assert rule["email_to"] == "a@x, b@y" and rule["window_s"] is None and rule["enabled"] == 1
    listed = client.get("/api/alerts").json()
    assert listed["rules"][0]["description"].startswith("a run costs more than $0.5")

    r = client.post("/api/exports", json={"kind": "finetune_jsonl", "run_ids": "a, b\nc"})
    assert r.status_code == 202, r.text
    started = r.json()
    assert set(started["export"]) == set(
        _response(spec, "get", "/api/exports/{export_id}", 200)["properties"]
    )
    # A comma- or newline-separated text is a list of run ids, as from the form.
    assert started["export"]["params"]["run_ids"] == ["a", "b", "c"]
    export_id = started["export_id"]
    done = wait_until(
        lambda: (lambda e: e if e["status"] in ("succeeded", "failed") else None)(
            client.get(f"/api/exports/{export_id}").json()
        ),
        60,
        f"export {export_id}",
    )
    assert done["id"] == export_id and done["kind"] == "finetune_jsonl"
    assert client.get("/api/exports").json()["exports"][0]["id"] == export_id


def _form_error(page_client, path: str, fields: dict[str, str]) -> str:
    r = page_client.post(path, data={**fields, "_csrf_token": csrf(page_client)})
    assert r.status_code == 422, r.text[:500]
    error = BeautifulSoup(r.text, "html.parser").select_one(".form-error")
    assert error is not None
    return error.text


def _api_error(page_client, key: str, path: str, body: dict[str, Any]) -> str:
    # State changes under /api take a header key, never the session cookie.
    r = page_client.post(path, json=body, headers={"X-API-Key": key})
    assert r.status_code == 400, r.text[:500]
    return r.text


@pytest.mark.parametrize(
    ("page", "api", "fields", "json", "named"),
    [
        (
            "/alerts/rules",
            "/api/alerts/rules",
            {"name": "n", "kind": "window_cost", "threshold_usd": "1", "window_s": "0"},
            {"name": "n", "kind": "window_cost", "threshold_usd": 1, "window_s": 0},
            "window_s",
        ),
        (
            "/alerts/rules",
            "/api/alerts/rules",
            {"name": "n", "kind": "run_cost"},
            {"name": "n", "kind": "run_cost"},
            "threshold_usd is required for this kind of rule",
        ),
        (
            "/alerts/rules",
            "/api/alerts/rules",
            {"name": "n", "kind": "run_cost", "threshold_usd": "1", "webhook_url": "ftp://x"},
            {"name": "n", "kind": "run_cost", "threshold_usd": 1, "webhook_url": "ftp://x"},
            "webhook_url",
        ),
        (
            "/exports",
            "/api/exports",
            {"kind": "huggingface", "format": "xml"},
            {"kind": "huggingface", "format": "xml"},
            "format",
        ),
        (
            "/exports",
            "/api/exports",
            {"kind": "finetune_jsonl", "below": "low"},
            {"kind": "finetune_jsonl", "below": "low"},
            "below",
        ),
        (
            "/exports",
            "/api/exports",
            {"kind": "finetune_jsonl"},
            {"kind": "finetune_jsonl"},
            "choose runs",
        ),
        (
            "/finetune",
            "/api/finetune",
            {"run_ids": "good", "training_steps": "0"},
            {"run_ids": ["good"], "training_steps": 0},
            "training_steps",
        ),
    ],
)
def test_form_and_api_refuse_the_same_input_naming_the_same_field(
    page_client, keys, page, api, fields, json, named
):
    assert named in _form_error(page_client, page, fields)
    assert named in _api_error(page_client, keys["admin"], api, json)


def test_nothing_is_stored_from_refused_input(page_client, keys):
    _form_error(page_client, "/alerts/rules", {"name": " ", "kind": "run_cost"})
    _api_error(page_client, keys["admin"], "/api/alerts/rules", {"name": " ", "kind": "run_cost"})
    assert page_client.get("/api/alerts").json()["rules"] == []
    _form_error(page_client, "/exports", {"kind": "wandb", "push": "maybe"})
    assert page_client.get("/api/exports").json()["exports"] == []
