"""What an ingested trace keeps, as the OpenTelemetry SDK's own exporters send it.

Tool definitions reach the fine-tune export, each call keeps its own
parameters, the agent name and the root span's name are shown, a failed
child span stays failed, plain log records are kept on their span, GenAI
metrics are stored and others reported, and errors are a ``google.rpc.Status``
in the request's encoding.
"""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Status, StatusCode

from tests.test_otlp import PROTOBUF, provider_for

pytestmark = pytest.mark.both_backends

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "a city name"}},
    "required": ["city"],
}
TOOL_JSON = json.dumps(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now in a city",
            "parameters": WEATHER_SCHEMA,
        },
    }
)


def _llm_attributes(temperature: float, inputs: list[dict], outputs: list[dict]) -> dict:
    """An OpenInference LLM span's attributes, flattened as the instrumentors write them."""
    a: dict = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "mistral-small-latest",
        "llm.provider": "mistralai",
        "llm.invocation_parameters": json.dumps({"temperature": temperature}),
        "llm.token_count.prompt": 100,
        "llm.token_count.completion": 10,
        "llm.tools.0.tool.json_schema": TOOL_JSON,
    }
    for prefix, messages in (("llm.input_messages", inputs), ("llm.output_messages", outputs)):
        for i, m in enumerate(messages):
            for key, value in m.items():
                a[f"{prefix}.{i}.message.{key}"] = value
    return a


def weather_agent(tracer) -> None:
    """An agent that asks for the weather, calls the tool, answers; one retriever fails."""
    user = {"role": "user", "content": "Weather in Paris?"}
    call = {
        "role": "assistant",
        "tool_calls.0.tool_call.id": "call_1",
        "tool_calls.0.tool_call.function.name": "get_weather",
        "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
    }
    with tracer.start_as_current_span(
        "weather-bot turn",
        attributes={"openinference.span.kind": "AGENT", "gen_ai.agent.name": "weather-bot"},
    ):
        with tracer.start_as_current_span(
            "ChatCompletion", attributes=_llm_attributes(0.1, [user], [call])
        ):
            pass
        with tracer.start_as_current_span(
            "get_weather",
            attributes={
                "openinference.span.kind": "TOOL",
                "tool.name": "get_weather",
                "tool_call.id": "call_1",
                "tool.parameters": '{"city": "Paris"}',
                "output.value": "18°C",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "lookup docs", attributes={"openinference.span.kind": "RETRIEVER"}
        ) as retriever:
            retriever.set_status(Status(StatusCode.ERROR, "index offline"))
        tool_message = {"role": "tool", "content": "18°C", "tool_call_id": "call_1"}
        with tracer.start_as_current_span(
            "ChatCompletion",
            attributes=_llm_attributes(
                0.7,
                [user, {"role": "assistant"}, tool_message],
                [{"role": "assistant", "content": "18°C in Paris."}],
            ),
        ):
            pass


@pytest.fixture
def ingested(live_server, keys):
    provider = provider_for(live_server.url, keys["member"], service="weather-service")
    weather_agent(provider.get_tracer("weather"))
    provider.shutdown()
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["member"]}) as c:
        [run] = c.get("/api/runs").json()["runs"]
        yield c, c.get(f"/api/runs/{run['id']}").json()


def test_every_span_keeps_what_it_said(ingested):
    c, detail = ingested
    run = detail["run"]
    assert run["label"] == "weather-bot turn" and run["prompt"] == "Weather in Paris?"
    assert run["params"]["agent"] == "weather-bot"
    assert run["params"]["temperature"] == 0.1  # the first call's, shown on the run
    spans = {
        (s["name"], s["attributes"].get("llm.invocation_parameters")): s for s in detail["spans"]
    }
    # Each call keeps its own parameters.
    temperatures = sorted(
        json.loads(s["attributes"]["llm.invocation_parameters"])["temperature"]
        for s in detail["spans"]
        if s["kind"] == "llm"
    )
    assert temperatures == [0.1, 0.7]
    [retriever] = [s for s in spans.values() if s["name"] == "lookup docs"]
    assert retriever["status"] == "error" and retriever["status_message"] == "index offline"
    [root] = [s for s in spans.values() if s["name"] == "weather-bot turn"]
    assert root["status"] == "unset" and root["parent_span_id"] is None
    assert root["resource"]["service.name"] == "weather-service"
    assert root["resource"]["telemetry.sdk.name"] == "opentelemetry"
    assert root["scope"]["name"] == "weather" and root["span_kind"] == "internal"
    assert root["attributes"]["gen_ai.agent.name"] == "weather-bot"
    # The run page names the agent.
    page = c.get(f"/runs/{run['id']}").text
    assert "weather-bot" in page


def test_tool_definitions_reach_the_fine_tune_export(ingested):
    c, detail = ingested
    run = detail["run"]
    [definition] = run["params"]["tool_definitions"]
    assert definition["function"]["parameters"] == WEATHER_SCHEMA
    r = c.post("/api/exports", json={"kind": "finetune_jsonl", "run_ids": [run["id"]]})
    export_id = r.json()["export_id"]
    for _ in range(200):
        export = c.get(f"/api/exports/{export_id}").json()
        if export["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert export["status"] == "succeeded", export.get("error")
    [line] = [json.loads(x) for x in c.get(f"/api/exports/{export_id}/file").text.splitlines()]
    [tool] = line["tools"]
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"] == WEATHER_SCHEMA
    assert tool["function"]["description"] == "Weather now in a city"


def test_plain_log_records_are_kept_on_their_span(live_server, keys):
    tracer_provider = provider_for(live_server.url, keys["member"])
    exporter = OTLPLogExporter(
        endpoint=f"{live_server.url}/v1/logs", headers={"X-API-Key": keys["member"]}
    )
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": "logger"}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    set_logger_provider(logger_provider)
    logger = logging.getLogger("agent.steps")
    handler = LoggingHandler(logger_provider=logger_provider)
    logger.addHandler(handler)
    try:
        tracer = tracer_provider.get_tracer("steps")
        with tracer.start_as_current_span("plan"):
            # Sent before its span ends (and so before the span itself is exported).
            logger.warning("planning took a detour: %s", "<b>cache miss</b>")
    finally:
        logger.removeHandler(handler)
        logger_provider.shutdown()
        tracer_provider.shutdown()
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["member"]}) as c:
        [run] = c.get("/api/runs").json()["runs"]
        [span] = c.get(f"/api/runs/{run['id']}/spans").json()
        [log] = span["logs"]
        assert log["severity_text"] == "WARN" and "cache miss" in json.dumps(log["body"])
        # Logs carry no GenAI content here: the thread is untouched.
        assert c.get(f"/api/runs/{run['id']}").json()["messages"] == []


def test_genai_metrics_are_stored_and_others_reported(live_server, keys):
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("gen_ai")
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    usage.record(
        120, {"gen_ai.token.type": "input", "gen_ai.request.model": "mistral-small-latest"}
    )
    meter.create_counter("http.server.requests").add(3)
    body = encode_metrics(reader.get_metrics_data()).SerializeToString()
    r = httpx.post(
        f"{live_server.url}/v1/metrics",
        content=body,
        headers={**PROTOBUF, "X-API-Key": keys["member"]},
    )
    assert r.status_code == 200
    answer = ExportMetricsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_data_points == 1
    assert "http.server.requests" in answer.partial_success.error_message
    assert "gen_ai" in answer.partial_success.error_message
    # What was stored is read back, summed per metric, model and token type.
    r = httpx.get(f"{live_server.url}/api/otlp/metrics", headers={"X-API-Key": keys["viewer"]})
    [usage] = r.json()["metrics"]
    assert (usage["name"], usage["model"], usage["token_type"]) == (
        "gen_ai.client.token.usage",
        "mistral-small-latest",
        "input",
    )
    assert (usage["points"], usage["count"], usage["total"]) == (1, 1, 120)
    r = httpx.get(
        f"{live_server.url}/api/otlp/metrics?hours=0", headers={"X-API-Key": keys["viewer"]}
    )
    assert r.status_code == 400 and "hours" in r.text


@pytest.mark.parametrize(
    ("path", "key", "status", "code"),
    [
        ("/v1/traces", None, 401, code_pb2.UNAUTHENTICATED),
        ("/v1/logs", "wrong", 401, code_pb2.UNAUTHENTICATED),
        ("/v1/nothing", "member", 404, code_pb2.NOT_FOUND),
    ],
)
def test_errors_are_rpc_status_in_the_request_encoding(live_server, keys, path, key, status, code):
    headers = {} if key is None else {"X-API-Key": keys.get(key, "ao_wrong")}
    r = httpx.post(f"{live_server.url}{path}", content=b"", headers={**PROTOBUF, **headers})
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/x-protobuf")
    answer = status_pb2.Status.FromString(r.content)
    assert answer.code == code and answer.message
    r = httpx.post(
        f"{live_server.url}{path}",
        content=b"{}",
        headers={"Content-Type": "application/json", **headers},
    )
    assert r.status_code == status
    parsed = json_format.ParseDict(
        {k: v for k, v in r.json().items() if k in ("code", "message", "details")},
        status_pb2.Status(),
    )
    assert parsed.code == code and r.json()["detail"] == parsed.message


def test_unsupported_media_type_is_415_with_a_status(live_server, keys):
    r = httpx.post(
        f"{live_server.url}/v1/logs",
        content=b"hello",
        headers={"Content-Type": "text/plain", "X-API-Key": keys["member"]},
    )
    assert r.status_code == 415
    assert (
        r.json()["code"] == code_pb2.INVALID_ARGUMENT
        and "application/x-protobuf" in r.json()["message"]
    )
