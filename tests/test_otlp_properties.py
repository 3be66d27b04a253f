"""Property-based: no OTLP attribute value of any kind, and no wrong JSON value at any
place of a request, makes ingest answer 5xx or a page fail afterwards.

Hypothesis builds the requests from the real ``opentelemetry.proto`` types.
"""

from __future__ import annotations

import json
from typing import Any

from google.rpc import code_pb2
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from tests.otlp_requests import JSON, any_value, as_json, export, post, span

scalars = (
    st.text(max_size=50)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.binary(max_size=20)
)
attribute_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
ATTRIBUTE_KEYS = [
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.name",
    "gen_ai.conversation.id",
    "openinference.span.kind",
    "llm.input_messages.0.message.content",
    "input.value",
    "output.value",
    "tool.parameters",
]


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    root=st.dictionaries(st.sampled_from(ATTRIBUTE_KEYS), attribute_values, max_size=6),
    child=st.dictionaries(st.sampled_from(ATTRIBUTE_KEYS), attribute_values, max_size=6),
    name=st.text(max_size=30),
    error=st.none() | st.text(max_size=20),
    encoding=st.sampled_from(["protobuf", "json"]),
    trace=st.integers(min_value=1, max_value=2**64),
)
def test_any_attribute_values_are_ingested_and_rendered(
    client, root, child, name, error, encoding, trace
):
    request = export(span(name, trace, 1), span("child", trace, 2, parent=1, error=error))
    spans = request.resource_spans[0].scope_spans[0].spans
    for target, attributes in ((spans[0], root), (spans[1], child)):
        for key, value in attributes.items():
            target.attributes.append(KeyValue(key=key, value=any_value(value)))
    r = post(client, request, encoding)
    assert r.status_code == 200, r.text[:500]
    run_id = client.get("/api/runs").json()["runs"][0]["id"]
    for path in ("/", "/runs", f"/runs/{run_id}", f"/api/runs/{run_id}"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:1000])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=8,
)
# Where a wrong value may land: (path to an object in a valid payload, key to set).
JSON_SPOTS = [
    ((), "resourceSpans"),
    (("resourceSpans", 0), "resource"),
    (("resourceSpans", 0), "scopeSpans"),
    (("resourceSpans", 0, "scopeSpans", 0), "scope"),
    (("resourceSpans", 0, "scopeSpans", 0), "spans"),
    *(
        (("resourceSpans", 0, "scopeSpans", 0, "spans", 0), key)
        for key in ("traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano")
    ),
    *(
        (("resourceSpans", 0, "scopeSpans", 0, "spans", 0), key)
        for key in ("attributes", "events", "links", "status", "droppedAttributesCount")
    ),
    (("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "attributes", 0), "value"),
    (("resourceSpans", 0, "scopeSpans", 0, "spans", 0, "attributes", 0, "value"), "kvlistValue"),
]


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spot=st.sampled_from(JSON_SPOTS), value=json_values)
def test_a_wrong_value_anywhere_in_otlp_json_is_a_400_or_accepted(client, spot, value):
    payload = as_json(export(span("agent", 7, 1, input__value="Hi", n=1)))
    target: Any = payload
    for step in spot[0]:
        target = target[step]
    target[spot[1]] = value
    r = client.post("/v1/traces", content=json.dumps(payload), headers=JSON)
    assert r.status_code in (200, 400), r.text[:500]
    if r.status_code == 400:
        assert r.json()["code"] == code_pb2.INVALID_ARGUMENT and r.json()["message"]
    for path in ("/", "/runs", "/api/runs"):
        assert client.get(path).status_code == 200, path
