"""OTLP ingest takes odd and hostile traces: malformed ones get a 400 naming the field,
odd values are normalised as they are stored, and every page renders what was stored.

Requests are built from the real ``opentelemetry.proto`` message types and
posted over HTTP as protobuf and as OTLP/JSON (hex ids), as exporters do.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from app.ingest.normalize import MAX_TOKENS
from tests.otlp_requests import (
    JSON,
    PROTOBUF,
    as_json,
    assert_pages_render,
    export,
    only_run,
    post,
    span,
)
from tests.receivers import wait_until

pytestmark = pytest.mark.both_backends

I64_MAX = 9223372036854775807

# --- 1. malformed requests: 400 with a google.rpc.Status naming the field -----------

SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


def _one_span(**fields: Any) -> dict[str, Any]:
    base = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{**base, **fields}]}]}]}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"resourceSpans": 5}, "resourceSpans: expected a list"),
        ({"resourceSpans": [5]}, "resourceSpans[0]: expected an object"),
        ({"resourceSpans": [{"scopeSpans": 5}]}, "resourceSpans[0].scopeSpans: expected a list"),
        (
            {"resourceSpans": [{"resource": {"attributes": {"a": 1}}}]},
            "resourceSpans[0].resource.attributes: expected a list",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": "x"}]}]},
            "resourceSpans[0].scopeSpans[0].spans: expected a list",
        ),
        (_one_span(name=5), f"{SPAN_PATH}.name: expected a string"),
        (_one_span(traceId=12), f"{SPAN_PATH}.traceId: expected a hex string"),
        (
            _one_span(startTimeUnixNano="soon"),
            f"{SPAN_PATH}.startTimeUnixNano: expected an integer",
        ),
        (_one_span(endTimeUnixNano=-1), f"{SPAN_PATH}.endTimeUnixNano: integer out of range"),
        (_one_span(status="ERROR"), f"{SPAN_PATH}.status: expected an object"),
        (_one_span(status={"code": "BROKEN"}), f"{SPAN_PATH}.status.code: unknown value"),
        (
            _one_span(attributes=[{"key": "n", "value": {"intValue": "many"}}]),
            f"{SPAN_PATH}.attributes[0].value.intValue: expected an integer",
        ),
        (
            _one_span(attributes=[{"key": "n", "value": {"arrayValue": {"values": 3}}}]),
            f"{SPAN_PATH}.attributes[0].value.arrayValue.values: expected a list",
        ),
        (
            _one_span(attributes=[{"key": "n", "value": {"intValue": 1, "stringValue": "1"}}]),
            f"{SPAN_PATH}.attributes[0].value.stringValue: only one of",
        ),
        (_one_span(events=[{"name": ["a"]}]), f"{SPAN_PATH}.events[0].name: expected a string"),
    ],
)
def test_wrong_json_shapes_are_400_naming_the_field(client, payload, message):
    r = client.post("/v1/traces", content=json.dumps(payload), headers=JSON)
    assert r.status_code == 400, r.text
    body = r.json()
    # A google.rpc.Status in JSON, as the OTLP specification asks (plus the studio's "detail").
    assert body["code"] == code_pb2.INVALID_ARGUMENT
    assert body["message"].startswith(message), body["message"]
    assert body["detail"] == body["message"]
    assert client.get("/api/runs").json()["total"] == 0


def test_deeply_nested_json_is_400_not_a_recursion_error(client):
    deep = '{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = client.post("/v1/traces", content=deep, headers=JSON)
    assert r.status_code == 400, r.text[:500]
    assert "nested deeper than" in r.json()["message"]
    # Brackets inside strings are text, not nesting.
    payload = as_json(export(span("[" * 5000, 1, 1)))
    assert client.post("/v1/traces", json=payload).status_code == 200
    assert only_run(client)["label"] == "[" * 200


def test_deeply_nested_protobuf_is_400_in_protobuf(client):
    request = export(span("deep", 1, 1))
    attribute = request.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="deep")
    inner = attribute.value
    for _ in range(200):  # built in place: copying it would hit the same decoder limit
        inner = inner.array_value.values.add()
    inner.string_value = "bottom"
    r = post(client, request, "protobuf")
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/x-protobuf")
    status = status_pb2.Status.FromString(r.content)
    assert status.code == code_pb2.INVALID_ARGUMENT and "protobuf" in status.message


def test_invalid_utf8_is_400_in_either_encoding(client):
    r = client.post("/v1/traces", content=b'{"resourceSpans": ["\xff\xfe"]}', headers=JSON)
    assert r.status_code == 400 and "UTF-8" in r.json()["message"]
    body = export(span("xx-name", 1, 1)).SerializeToString().replace(b"xx-name", b"\xffx-name")
    r = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert r.status_code == 400
    assert "UTF-8" in status_pb2.Status.FromString(r.content).message
    assert client.get("/api/runs").json()["total"] == 0


def test_a_deeply_nested_json_attribute_is_kept_as_text(client):
    deep = "[" * 100_000 + "]" * 100_000
    request = export(
        span(
            "chat m",
            1,
            1,
            gen_ai__operation__name="chat",
            gen_ai__request__model="m",
            gen_ai__input__messages=deep,
            gen_ai__system_instructions=deep,
            llm__invocation_parameters='{"p": ' + "[" * 50_000 + "]" * 50_000 + "}",
        )
    )
    assert post(client, request, "protobuf").status_code == 200
    assert only_run(client)["status"] == "succeeded"
    assert_pages_render(client)


# --- 2. normalised values -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_int64_token_counts_are_clamped_and_the_dashboard_still_adds_up(client, encoding):
    for trace in (1, 2):
        request = export(
            span(
                "chat m",
                trace,
                1,
                gen_ai__operation__name="chat",
                gen_ai__request__model="mistral-small-latest",
                gen_ai__usage__input_tokens=I64_MAX,
                gen_ai__usage__output_tokens=-I64_MAX,
            )
        )
        assert post(client, request, encoding).status_code == 200
    # Two of them used to overflow sum(): "integer overflow" on the dashboard, for good.
    r = client.get("/")
    assert r.status_code == 200, r.text[:2000]
    runs = client.get("/api/runs").json()["runs"]
    assert [(r["input_tokens"], r["output_tokens"]) for r in runs] == [(MAX_TOKENS, 0)] * 2
    assert_pages_render(client)


ODD_VALUES: list[tuple[Any, int | None]] = [
    ("12", 12),  # a count sent as text
    (12.9, 12),  # a double where an int is expected
    (math.nan, None),
    (math.inf, None),
    (True, None),
    ([1, 2], None),
    ({"n": 1}, None),
    (b"\xfe\xff", None),  # bytes are kept as hex text ("feff")
    ("lots", None),
]


@pytest.mark.parametrize(("value", "tokens"), ODD_VALUES)
def test_odd_attribute_types_are_normalised(client, value, tokens):
    request = export(
        span(
            "agent",
            1,
            1,
            input__value="Hi",
            weird=value,
            nested=[value, {"inner": value}],
        ),
        span(
            "chat",
            1,
            2,
            parent=1,
            gen_ai__operation__name="chat",
            gen_ai__request__model=[value],
            gen_ai__usage__input_tokens=value,
            gen_ai__usage__output_tokens=3,
            gen_ai__response__finish_reasons=value,
        ),
    )
    assert post(client, request, "protobuf").status_code == 200
    run = only_run(client)
    assert run["status"] == "succeeded" and run["prompt"] == "Hi"
    [llm] = [s for s in client.get(f"/api/runs/{run['id']}").json()["spans"] if s["kind"] == "llm"]
    assert llm["input_tokens"] == tokens and llm["output_tokens"] == 3
    assert_pages_render(client)


def test_nan_and_infinity_are_kept_as_names(client):
    request = export(span("x", 1, 1, parent=9, a=math.nan, b=-math.inf, c=[math.inf]))
    assert post(client, request, "protobuf").status_code == 200
    run = only_run(client)
    [other] = [
        s for s in client.get(f"/api/runs/{run['id']}").json()["spans"] if s["span_id"] != "agent"
    ]
    assert other["attributes"] == {"a": "NaN", "b": "-Infinity", "c": ["Infinity"]}


def test_text_is_stored_as_valid_utf8_without_nul_and_capped(client):
    # Lone surrogates are valid JSON escapes, but no store can hold them as text.
    surrogate_json = (
        json.dumps(as_json(export(span("root SURROGATE x\x00y", 1, 1, input__value="q LONE\x00"))))
        .replace("SURROGATE", "\\ud800")
        .replace("LONE", "\\udfff")
    )
    assert client.post("/v1/traces", content=surrogate_json, headers=JSON).status_code == 200
    run = only_run(client)
    assert run["label"] == "root \ufffd x\ufffdy"
    assert run["prompt"] == "q \ufffd\ufffd"
    huge = "z" * 3_000_000
    request = export(span(huge, 2, 1, input__value=huge, output__value=huge))
    assert post(client, request, "protobuf").status_code == 200
    runs = client.get("/api/runs").json()["runs"]
    big = next(r for r in runs if r["id"] != run["id"])
    assert len(big["label"]) == 200 and len(big["prompt"]) <= 1_000_001
    assert len(big["response"]) <= 1_000_001
    assert_pages_render(client)


# --- 3 and 4. prompt-less traces are labelled; live lists get the complete row --------


def openai_v2_default_span(trace: int) -> Span:
    """What opentelemetry-instrumentation-openai-v2 sends by default: no content captured."""
    return span(
        "chat gpt-4o-mini",
        trace,
        1,
        gen_ai__operation__name="chat",
        gen_ai__system="openai",
        gen_ai__request__model="gpt-4o-mini",
        gen_ai__response__model="gpt-4o-mini-2024-07-18",
        gen_ai__usage__input_tokens=12,
        gen_ai__usage__output_tokens=5,
        gen_ai__response__finish_reasons=["stop"],
    )


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_a_promptless_trace_is_labelled_by_its_root_span(client, encoding):
    assert post(client, export(openai_v2_default_span(1)), encoding).status_code == 200
    run = only_run(client)
    assert run["prompt"] in (None, "") and run["label"] == "chat gpt-4o-mini"
    assert run["status"] == "succeeded" and run["model"] == "gpt-4o-mini-2024-07-18"
    for path in ("/", "/runs"):
        page = client.get(path)
        assert page.status_code == 200, page.text[:2000]
        assert "chat gpt-4o-mini" in page.text
    assert_pages_render(client)


def test_a_run_whose_root_comes_later_is_relabelled_by_the_root(client):
    child = span(
        "execute_tool search", 1, 2, parent=1, gen_ai__tool__name="search", output__value="ok"
    )
    assert post(client, export(child), "protobuf").status_code == 200
    assert only_run(client)["label"] == "execute_tool search"
    assert post(client, export(span("invoke_agent planner", 1, 1)), "json").status_code == 200
    run = only_run(client)
    assert run["label"] == "invoke_agent planner" and run["status"] == "succeeded"


@pytest.fixture
def live_list(live_server) -> Iterator[list[tuple[str, str]]]:
    """The (event, data) pairs of an open ``/runs/live`` stream, as they arrive."""
    seen: list[tuple[str, str]] = []
    ready = threading.Event()
    headers = {"X-API-Key": live_server.admin_key}
    client = httpx.Client(base_url=live_server.url, headers=headers, timeout=20)

    def follow() -> None:
        event, data = "", []
        with contextlib.suppress(httpx.HTTPError), client.stream("GET", "/runs/live") as stream:
            ready.set()  # the stream is subscribed once its headers came
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and event:  # a blank line ends an event
                    seen.append((event, "\n".join(data)))
                    event, data = "", []

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert ready.wait(10)
    yield seen
    client.close()


def _wait_for(seen: list[tuple[str, str]], needle: str) -> None:
    wait_until(
        lambda: any(needle in data for _, data in seen), 10, f"{needle!r} in the live stream"
    )


def test_live_list_gets_each_run_with_its_prompt_or_label(live_server, live_list):
    headers = {"X-API-Key": live_server.admin_key, **PROTOBUF}
    with httpx.Client(base_url=live_server.url, headers=headers) as c:
        first = export(
            span("invoke_agent helper", 1, 1, input__value="Capital of France?"),
            span(
                "chat m",
                1,
                2,
                parent=1,
                gen_ai__operation__name="chat",
                gen_ai__request__model="mistral-small-latest",
            ),
        )
        assert c.post("/v1/traces", content=first.SerializeToString()).status_code == 200
        _wait_for(live_list, "Capital of France?")
        assert (
            c.post(
                "/v1/traces", content=export(openai_v2_default_span(2)).SerializeToString()
            ).status_code
            == 200
        )
        _wait_for(live_list, "chat gpt-4o-mini")
    new = [data for event, data in live_list if event == "run_new"]
    # Each run is announced once, with the row its list shows: prompt (or label) and model.
    assert len(new) == 2
    assert "Capital of France?" in new[0] and "mistral-small-latest" in new[0]
    assert "chat gpt-4o-mini" in new[1] and "gpt-4o-mini-2024-07-18" in new[1]


# --- 5. unknown usage and failed child spans (contract C1) ------------------------------


def events_of(client: Any, run_id: str) -> list[dict[str, Any]]:
    """The stored events of an ended run, read from its event stream."""
    text = client.get(f"/api/runs/{run_id}/events").text
    lines = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    return [line["payload"] for line in lines]


def test_an_llm_span_without_usage_records_unknown_tokens(client):
    request = export(
        span("agent", 1, 1, input__value="Hi"),
        span(
            "chat",
            1,
            2,
            parent=1,
            gen_ai__operation__name="chat",
            gen_ai__provider__name="mistral_ai",
            gen_ai__request__model="mistral-small-latest",
        ),
    )
    assert post(client, request, "json").status_code == 200
    run = only_run(client)
    [call] = [e for e in events_of(client, run["id"]) if e["type"] == "llm_call_finished"]
    assert call["input_tokens"] is None and call["output_tokens"] is None
    assert call["cost_status"] == "unpriced"  # unknown, never a priced $0
    run = client.get(f"/api/runs/{run['id']}").json()["run"]
    assert run["cost_status"] != "priced"
    assert_pages_render(client)


def test_failed_child_spans_are_recorded_as_failed_with_their_message(client):
    request = export(
        span("agent", 1, 1, input__value="Book a flight"),
        span(
            "chat",
            1,
            2,
            parent=1,
            error="429 rate limited",
            gen_ai__operation__name="chat",
            gen_ai__request__model="mistral-small-latest",
            gen_ai__usage__input_tokens=10,
            gen_ai__usage__output_tokens=0,
        ),
        span(
            "execute_tool book",
            1,
            3,
            parent=1,
            error="no seats left",
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name="book",
        ),
    )
    assert post(client, request, "protobuf").status_code == 200
    run = only_run(client)
    detail = client.get(f"/api/runs/{run['id']}").json()
    [call] = [e for e in events_of(client, run["id"]) if e["type"] == "llm_call_finished"]
    assert call["status"] == "error" and call["error"] == "429 rate limited"
    [llm] = [s for s in detail["spans"] if s["kind"] == "llm"]
    assert llm["status"] == "error"
    [tool] = detail["tool_calls"]
    assert tool["status"] == "error" and tool["error"] == "no seats left"
    [tool_span] = [s for s in detail["spans"] if s["kind"] == "tool"]
    assert tool_span["status"] == "error"
    assert_pages_render(client)
