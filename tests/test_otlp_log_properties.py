"""Property-based: no OTLP log record, whatever its event, body or attributes, and whether
it comes before or after its span, makes ingest answer 5xx or a page fail afterwards.

Hypothesis builds the records from the real ``opentelemetry.proto`` types, with the
GenAI event names the studio reads messages from.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from tests.otlp_requests import PROTOBUF, T0, any_value, export, post, span
from tests.test_otlp_properties import attribute_values

EVENT_NAMES = [
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
    "gen_ai.client.inference.operation.details",
    "",
    "app.step",
]
LOG_ATTRIBUTE_KEYS = [
    "event.name",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "body",
    "content",
    "id",
]
BODY_KEYS = ["content", "message", "tool_calls", "id", "role", "index", "finish_reason"]
bodies = attribute_values | st.dictionaries(
    st.sampled_from(BODY_KEYS), attribute_values, max_size=4
)


TRACES = itertools.count(10**6)


def logs_request(trace: int, span_id: int, records: list[tuple]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.scope.name = "robust-logs"
    for i, (event, body, attributes) in enumerate(records):
        record = LogRecord(
            time_unix_nano=T0 + i,
            trace_id=trace.to_bytes(16, "big"),
            span_id=span_id.to_bytes(8, "big"),
            event_name=event,
            body=any_value(body),
        )
        for key, value in attributes.items():
            record.attributes.append(KeyValue(key=key, value=any_value(value)))
        scope.log_records.append(record)
    return request


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    records=st.lists(
        st.tuples(
            st.sampled_from(EVENT_NAMES),
            bodies,
            st.dictionaries(st.sampled_from(LOG_ATTRIBUTE_KEYS), attribute_values, max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
    logs_first=st.booleans(),
)
def test_any_log_records_are_ingested_and_rendered(client, records, logs_first):
    # A trace of its own per example: log records have no id, a repeat would add to them.
    trace = next(TRACES)
    spans = export(
        span("agent", trace, 1),
        span("chat", trace, 2, parent=1, gen_ai__operation__name="chat"),
    )
    logs = logs_request(trace, 2, records).SerializeToString()

    def send_logs() -> None:
        r = client.post("/v1/logs", content=logs, headers=PROTOBUF)
        assert r.status_code == 200, r.text[:500]

    if logs_first:
        send_logs()
    assert post(client, spans, "protobuf").status_code == 200
    if not logs_first:
        send_logs()
    run_id = next(
        r["id"] for r in client.get("/api/runs?limit=500").json()["runs"] if r["label"] == "agent"
    )
    listed = client.get(f"/api/runs/{run_id}/spans")
    assert listed.status_code == 200, listed.text[:500]
    [chat] = [s for s in listed.json() if s["name"] == "chat"]
    assert len(chat["logs"]) == len(records)
    for path in (
        "/",
        "/runs",
        f"/runs/{run_id}",
        f"/api/runs/{run_id}",
        f"/runs/{run_id}/trace",
        f"/runs/{run_id}/spans/{chat['span_id']}",
    ):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:1000])
