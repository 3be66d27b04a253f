"""The OpenAPI schema describes requests and responses as they are; form and API check alike.

A client generating code from ``/schema/openapi.json`` learns each body's
limits (the very ones the server enforces) and each answer's shape; the
answers the server really gives validate against that schema. The new-run
form and ``POST /api/runs`` are checked by the same ``RunCreate``, so they
refuse the same input and name the same field.
"""

from typing import Any

import jsonschema
import pytest
from bs4 import BeautifulSoup

from tests.conftest import MISTRAL_MODEL, csrf, wait_for_run
from tests.fake_mistral import Reply


def openapi(client) -> dict[str, Any]:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()


def component(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return schema["components"]["schemas"][name]


def resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = component(schema, node["$ref"].rsplit("/", 1)[1])
    return node


def answer_schema(schema: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    content = schema["paths"][path][method]["responses"][status]["content"]
    return content["application/json"]["schema"]


def properties(schema: dict[str, Any], method: str, path: str, status: str = "200") -> set[str]:
    return set(resolved(schema, answer_schema(schema, method, path, status))["properties"])


def assert_conforms(schema: dict[str, Any], method: str, path: str, body: Any, status="200"):
    """``body`` (a real answer) is valid against the schema the server publishes for it."""
    target = {**answer_schema(schema, method, path, status), "components": schema["components"]}
    jsonschema.validate(body, target, cls=jsonschema.Draft202012Validator)


def limits(node: dict[str, Any]) -> dict[str, Any]:
    """The constraints of an optional field (``oneOf [T, null]`` with the limits beside it)."""
    return {k: v for k, v in node.items() if k not in ("oneOf", "description")}


def test_run_bodies_carry_the_limits_the_server_enforces(client):
    schema = openapi(client)
    run_create = component(schema, "RunCreate")
    assert run_create["required"] == ["prompt"]
    fields = run_create["properties"]
    assert limits(fields["max_tokens"]) == {"minimum": 1, "maximum": 32768}
    assert limits(fields["max_rounds"]) == {"minimum": 1, "maximum": 20}
    assert limits(fields["temperature"]) == {"minimum": 0.0, "maximum": 2.0}
    assert fields["prompt"]["maxLength"] == 100_000 and fields["prompt"]["minLength"] == 1
    assert fields["prompt"]["pattern"] == r"\S"  # more than whitespace
    assert fields["system_prompt"]["maxLength"] == 20_000
    assert fields["model"]["maxLength"] == 200 and fields["session"]["maxLength"] == 200
    assert {"type": "array", "items": {"type": "string"}} in fields["tools"]["oneOf"]
    body = schema["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/RunCreate"}
    # A replay overrides the same settings, within the same limits, and has no prompt.
    replay = component(schema, "ReplayCreate")
    assert "prompt" not in replay["properties"] and not replay.get("required")
    for name, field in replay["properties"].items():
        assert field == fields[name], name
    # Refusals are documented with the error body, which names the field.
    refusals = schema["paths"]["/api/runs"]["post"]["responses"]
    assert {"400", "429", "503"} <= set(refusals)
    assert {"status_code", "detail", "extra"} <= properties(schema, "post", "/api/runs", "400")


def test_answers_have_schemas_with_real_properties(client):
    schema = openapi(client)
    expected = {
        ("post", "/api/runs", "201"): {"run_id", "status"},
        ("get", "/api/runs", "200"): {"runs", "total", "total_capped", "limit", "offset"},
        ("get", "/api/runs/{run_id}", "200"): {"run", "messages", "tool_calls", "spans"},
        ("post", "/api/runs/{run_id}/replay", "201"): {"run_id", "diff_id", "parent_run_id"},
        ("get", "/api/diffs/{diff_id}", "200"): {"id", "run_a", "run_b", "status", "data"},
        ("post", "/api/diffs", "201"): {"diff_id", "status"},
        ("get", "/api/sessions", "200"): {"sessions", "total", "limit", "offset"},
        ("get", "/api/sessions/{session_id}", "200"): {"session", "models", "runs"},
        ("get", "/api/runs/{run_id}/memory", "200"): {"run_id", "snapshots"},
    }
    for (method, path, status), names in expected.items():
        assert names <= properties(schema, method, path, status), (method, path)
    # Rows are described column by column, not as a bare object.
    run_list = resolved(schema, answer_schema(schema, "get", "/api/runs", "200"))
    run_row = resolved(schema, run_list["properties"]["runs"]["items"])
    assert {"id", "status", "model", "params", "cost_usd", "session_id"} <= set(
        run_row["properties"]
    )
    health = answer_schema(schema, "get", "/api/health", "200")
    shapes = [set(resolved(schema, s)["properties"]) for s in health["oneOf"]]
    assert {"status"} in shapes and {"status", "storage", "since"} in shapes


def test_real_answers_validate_against_the_published_schema(client, fake_mistral):
    fake_mistral.add(
        Reply(tool_calls=[{"name": "wandb_log", "arguments": {"metrics": {"x": 1}}}]),
        Reply(text="Done.", usage=(12, 3)),
        Reply(text="Done again.", usage=(12, 4)),
    )
    schema = openapi(client)
    r = client.post(
        "/api/runs", json={"prompt": "log x", "model": MISTRAL_MODEL, "session": "schema"}
    )
    assert r.status_code == 201, r.text
    assert_conforms(schema, "post", "/api/runs", r.json(), "201")
    run_id = r.json()["run_id"]
    detail = wait_for_run(client, run_id)
    assert detail["messages"] and detail["spans"]
    assert_conforms(schema, "get", "/api/runs/{run_id}", client.get(f"/api/runs/{run_id}").json())
    listed = client.get("/api/runs", params={"session": "schema"}).json()
    assert listed["filters"] == {"session": "schema"} and listed["total"] == 1
    assert_conforms(schema, "get", "/api/runs", listed)
    memory = client.get(f"/api/runs/{run_id}/memory").json()
    assert memory["snapshots"]
    assert_conforms(schema, "get", "/api/runs/{run_id}/memory", memory)
    sessions = client.get("/api/sessions").json()
    assert_conforms(schema, "get", "/api/sessions", sessions)
    session = client.get(f"/api/sessions/{sessions['sessions'][0]['id']}").json()
    assert_conforms(schema, "get", "/api/sessions/{session_id}", session)

    r = client.post(f"/api/runs/{run_id}/replay", json={"temperature": 0.5, "tools": []})
    assert r.status_code == 201, r.text
    assert_conforms(schema, "post", "/api/runs/{run_id}/replay", r.json(), "201")
    wait_for_run(client, r.json()["run_id"])
    diff = client.get(f"/api/diffs/{r.json()['diff_id']}").json()
    assert diff["status"] == "ready" and diff["overrides"]["temperature"] == 0.5
    assert_conforms(schema, "get", "/api/diffs/{diff_id}", diff)
    r = client.post("/api/diffs", json={"a": run_id, "b": r.json()["run_id"]})
    assert r.status_code == 201, r.text
    assert_conforms(schema, "post", "/api/diffs", r.json(), "201")


BAD_INPUT = [
    ("max_tokens", "0"),
    ("max_tokens", "40000"),
    ("temperature", "3"),
    ("temperature", "hot"),
    ("max_rounds", "21"),
    ("session", "s" * 201),
    ("prompt", "   "),
]


@pytest.mark.parametrize(("field", "value"), BAD_INPUT)
def test_the_form_and_the_api_refuse_the_same_input_naming_the_same_field(
    page_client, keys, field, value
):
    form = {"prompt": "hi", "model": MISTRAL_MODEL, field: value}
    r = page_client.post(
        "/runs", data={**form, "_csrf_token": csrf(page_client)}, follow_redirects=False
    )
    assert r.status_code == 422, r.text
    error = BeautifulSoup(r.text, "html.parser").select_one(".form-error").text
    assert field in error, error
    # The form is shown again with what was typed, so it can be corrected.
    page = BeautifulSoup(r.text, "html.parser")
    assert page.select_one("textarea[name=prompt], input[name=prompt]") is not None

    api = {"X-API-Key": keys["admin"]}
    body: dict[str, Any] = {**form}
    if field in ("max_tokens", "temperature", "max_rounds") and value != "hot":
        body[field] = float(value) if field == "temperature" else int(value)
    r = page_client.post("/api/runs", json=body, headers=api)
    assert r.status_code == 400, r.text
    assert [e["key"] for e in r.json()["extra"]] == [field]
    # Neither started a run.
    assert page_client.get("/api/runs", headers=api).json()["total"] == 0


def test_a_good_form_post_starts_the_run_the_api_would(page_client, keys, fake_mistral):
    """Blank fields take the defaults; tools shown with none ticked means no tools."""
    fake_mistral.add(Reply(text="ok", usage=(3, 1)))
    form = {
        "prompt": "hi",
        "model": MISTRAL_MODEL,
        "temperature": " 0.3 ",
        "max_tokens": "",
        "system_prompt": "",
        "session": "  form  ",
        "tools_present": "1",
        "_csrf_token": csrf(page_client),
    }
    r = page_client.post("/runs", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    run_id = r.headers["location"].rsplit("/", 1)[1]
    page_client.headers["X-API-Key"] = keys["admin"]
    run = wait_for_run(page_client, run_id)["run"]
    assert run["params"]["temperature"] == 0.3 and run["params"]["tools"] == []
    assert run["params"]["system_prompt"] is None and run["session_id"] == "form"


def test_one_tool_name_stands_for_a_list_of_one(client, fake_mistral):
    """As before the body became a Struct: ``"tools": "name"`` is ``["name"]``; an unknown one is a 400."""
    fake_mistral.add(Reply(text="ok", usage=(3, 1)))
    tool = "wandb_log"
    r = client.post("/api/runs", json={"prompt": "hi", "model": MISTRAL_MODEL, "tools": tool})
    assert r.status_code == 201, r.text
    run = wait_for_run(client, r.json()["run_id"])["run"]
    assert run["params"]["tools"] == [tool]
    bad = client.post("/api/runs", json={"prompt": "hi", "tools": "no_such_tool"})
    assert bad.status_code == 400 and "unknown tool(s): no_such_tool" in bad.text
