"""Real OpenAI instrumentations, exported by the real OTLP/HTTP exporters, become studio runs.

The ``openai`` SDK talks to a local OpenAI-compatible server (tests/fake_openai.py) under
openinference-instrumentation-openai or opentelemetry-instrumentation-openai-v2; the SDK's
OTLP/HTTP span, log and metric exporters send what they record to a live studio; the test
then looks as a user would, through ``/api/runs``, ``/api/runs/{id}`` and
``/api/runs/{id}/spans``. Spans and log records are collected first and exported in an
order the test picks, so logs can reach the studio before the spans they belong to.

The conversation: the user asks for the weather, the model calls ``get_weather`` (not
streamed), the tool answers, the model answers (streamed, usage in a last chunk).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import wait_for_run
from tests.fake_openai import FakeOpenAI, Reply

MODEL = "gpt-4o-mini"
QUESTION = "What's the weather in Paris?"
RESULT = "sunny, 21 °C"
ANSWER = "It is sunny in Paris, 21 °C."
USAGE = ((40, 9), (62, 12))  # (prompt, completion) of each call, as the fake server reports
TEMPERATURES = (0.2, 0.7)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@dataclass
class Recorded:
    """What one instrumented conversation recorded, before anything is exported."""

    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    logs: InMemoryLogRecordExporter = field(default_factory=InMemoryLogRecordExporter)
    metrics: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)


def instrument(
    mode: str, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, TracerProvider]:
    """Turn on one instrumentation the way its users do; return it and the app's provider."""
    resource = Resource.create({"service.name": "weather-app"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(recorded.spans))
    if mode == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=tracer_provider)
        return instrumentor, tracer_provider
    import opentelemetry.instrumentation.openai_v2 as openai_v2

    if mode == "genai_events":
        # The event-per-message form (gen_ai.user.message, gen_ai.choice…), which openai-v2
        # emits on its v1.30 path; since util-genai 1.0 that path is only reached this way.
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        monkeypatch.setattr(openai_v2, "is_experimental_mode", lambda: False)
    else:
        # Latest conventions: content only in gen_ai.client.inference.operation.details logs.
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVENT_ONLY")
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(recorded.logs))
    meter_provider = MeterProvider(metric_readers=[recorded.metrics], resource=resource)
    instrumentor = openai_v2.OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        meter_provider=meter_provider,
    )
    return instrumentor, tracer_provider


def converse(mode: str, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """The weather conversation of a small app, under the instrumentation ``mode``."""
    fake.add(
        Reply(
            tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_w1"}],
            usage=USAGE[0],
        ),
        Reply(text=ANSWER, usage=USAGE[1]),
    )
    recorded = Recorded()
    instrumentor, tracer_provider = instrument(mode, recorded, monkeypatch)
    tracer = tracer_provider.get_tracer("weather-app")
    client = OpenAI(base_url=f"{fake.url}/v1", api_key="x", max_retries=0)
    messages: list[Any] = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": QUESTION},
    ]
    try:
        with tracer.start_as_current_span(
            "invoke_agent weather",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather"},
        ):
            first = client.chat.completions.create(
                model=MODEL, messages=messages, tools=TOOLS, temperature=TEMPERATURES[0]
            )
            call = first.choices[0].message.tool_calls[0]
            # The app's own tool span carries no content: the thread must come from the model calls.
            with tracer.start_as_current_span(
                "execute_tool get_weather",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.id": call.id,
                },
            ):
                result = RESULT
            messages += [
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": result},
            ]
            stream = client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=TOOLS,
                temperature=TEMPERATURES[1],
                stream=True,
                stream_options={"include_usage": True},
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
    finally:
        instrumentor.uninstrument()
    assert [r["temperature"] for r in fake.requests] == list(TEMPERATURES)
    return recorded


def export(url: str, key: str, recorded: Recorded, logs_first: bool = False) -> None:
    """Send what was recorded with the SDK's OTLP/HTTP exporters, in the order asked."""
    headers = {"X-API-Key": key}

    def spans() -> None:
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers, timeout=10)
        assert exporter.export(recorded.spans.get_finished_spans()) == SpanExportResult.SUCCESS

    def logs() -> None:
        records = recorded.logs.get_finished_logs()
        if records:
            exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=headers, timeout=10)
            assert exporter.export(records) == LogRecordExportResult.SUCCESS, "/v1/logs refused"

    for step in (logs, spans) if logs_first else (spans, logs):
        step()


def the_run(url: str, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one run the conversation became, in full, and its spans."""
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=10) as c:
        runs = c.get("/api/runs").json()["runs"]
        assert len(runs) == 1, [r["label"] or r["prompt"] for r in runs]
        detail = wait_for_run(c, runs[0]["id"], timeout=10)
        r = c.get(f"/api/runs/{runs[0]['id']}/spans")
        assert r.status_code == 200, r.text
        return detail, r.json()


def check_thread(detail: dict[str, Any]) -> None:
    """The run shows the conversation: prompt, tool call with its result, answer, usage."""
    run = detail["run"]
    assert run["status"] == "succeeded", run
    assert run["prompt"] == QUESTION and run["response"] == ANSWER
    assert run["model"] == MODEL
    assert (run["input_tokens"], run["output_tokens"]) == (40 + 62, 9 + 12)
    assert (run["params"] or {}).get("temperature") == TEMPERATURES[0]
    thread = [(m["role"], m["content"] or "") for m in detail["messages"] if m["role"] != "system"]
    assert [role for role, _ in thread] == ["user", "assistant", "tool", "assistant"], thread
    assert thread[0][1] == QUESTION and thread[2][1] == RESULT and thread[3][1] == ANSWER
    assistant = detail["messages"][[m["role"] for m in detail["messages"]].index("assistant")]
    [asked] = assistant["tool_calls"] or []
    assert json.dumps(asked).count("get_weather") == 1 and "Paris" in json.dumps(asked), asked
    # The app's tool span names the call only: arguments come from the model's call and
    # the result from the tool message that answered it.
    [call] = detail["tool_calls"]
    assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Paris"})
    assert call["result"] == RESULT
    assert call["call_id"] == "call_w1"


def llm_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((s for s in spans if s["kind"] == "llm"), key=lambda s: s["start_at"])


def check_spans(spans: list[dict[str, Any]], scope: str) -> None:
    """Every span is listed whole: one trace, the tree, kinds, resource, scope, per-call usage."""
    assert len({s["trace_id"] for s in spans}) == 1 and len(spans[0]["trace_id"]) == 32
    by_name = {s["name"]: s for s in spans}
    root = by_name["invoke_agent weather"]
    assert not root["parent_span_id"] and root["attributes"]["gen_ai.agent.name"] == "weather"
    tool = by_name["execute_tool get_weather"]
    assert tool["kind"] == "tool" and tool["parent_span_id"] == root["span_id"]
    assert tool["attributes"]["gen_ai.tool.call.id"] == "call_w1"
    calls = llm_spans(spans)
    assert len(calls) == 2 and len(spans) == 4
    for span, (prompt, completion) in zip(calls, USAGE, strict=True):
        assert span["parent_span_id"] == root["span_id"]
        assert (span["input_tokens"], span["output_tokens"]) == (prompt, completion)
        assert span["scope"]["name"] == scope
        assert span["resource"]["service.name"] == "weather-app"
        assert span["status"] in ("ok", "unset"), span["status"]


def test_openinference_conversation_is_a_run_with_every_span(
    live_server, keys, fake_openai, monkeypatch
):
    recorded = converse("openinference", fake_openai, monkeypatch)
    assert not recorded.logs.get_finished_logs()  # OpenInference puts everything on spans
    export(live_server.url, keys["member"], recorded)
    detail, spans = the_run(live_server.url, keys["viewer"])
    check_thread(detail)
    check_spans(spans, "openinference.instrumentation.openai")
    first, second = llm_spans(spans)
    for span, temperature in zip((first, second), TEMPERATURES, strict=True):
        # OpenInference marks its LLM spans INTERNAL; per-call parameters stay on each call.
        assert span["span_kind"] == "internal" and span["name"] == "ChatCompletion"
        params = json.loads(span["attributes"]["llm.invocation_parameters"])
        assert params["temperature"] == temperature
        schema = json.loads(span["attributes"]["llm.tools.0.tool.json_schema"])
        assert schema["function"]["parameters"]["required"] == ["city"]
    assert first["attributes"]["llm.token_count.prompt"] == 40
    assert [e["name"] for e in second["events"]] == ["First Token Stream Event"]


@pytest.mark.parametrize("logs_first", [False, True], ids=["spans_first", "logs_first"])
@pytest.mark.parametrize("mode", ["genai_events", "genai_latest"])
def test_genai_log_records_become_the_thread(
    live_server, keys, fake_openai, monkeypatch, mode, logs_first
):
    recorded = converse(mode, fake_openai, monkeypatch)
    # The point of these forms: the spans carry no content, the log records do.
    span_text = json.dumps([dict(s.attributes) for s in recorded.spans.get_finished_spans()])
    assert "Paris" not in span_text
    assert recorded.logs.get_finished_logs()
    export(live_server.url, keys["member"], recorded, logs_first)
    detail, spans = the_run(live_server.url, keys["viewer"])
    check_thread(detail)
    scope = {
        "genai_events": "opentelemetry.instrumentation.openai_v2",
        "genai_latest": "opentelemetry.util.genai.handler",
    }[mode]
    check_spans(spans, scope)
    for span, temperature in zip(llm_spans(spans), TEMPERATURES, strict=True):
        assert span["span_kind"] == "client" and span["name"] == f"chat {MODEL}"
        assert span["attributes"]["gen_ai.request.temperature"] == temperature
        assert span["attributes"]["gen_ai.response.id"] in fake_openai.response_ids
        assert span["logs"], f"no log records kept on {span['name']}"
    first = llm_spans(spans)[0]
    names = [log["event_name"] for log in first["logs"]]
    if mode == "genai_events":
        assert names == ["gen_ai.system.message", "gen_ai.user.message", "gen_ai.choice"]
        assert first["logs"][1]["body"] == {"content": QUESTION}
    else:
        [details] = first["logs"]
        assert names == ["gen_ai.client.inference.operation.details"]
        # Typed as it arrived: structured messages, not a JSON string.
        user = details["attributes"]["gen_ai.input.messages"][1]
        assert user == {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}


def test_genai_metrics_are_accepted_and_stored(
    live_server, settings, keys, fake_openai, monkeypatch
):
    recorded = converse("genai_latest", fake_openai, monkeypatch)
    exporter = OTLPMetricExporter(
        endpoint=f"{live_server.url}/v1/metrics", headers={"X-API-Key": keys["member"]}, timeout=10
    )
    assert exporter.export(recorded.metrics.get_metrics_data()) == MetricExportResult.SUCCESS
    db = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True)
    try:
        rows = db.execute("select name, attributes, data from otlp_metrics").fetchall()
    finally:
        db.close()
    names = {name for name, _, _ in rows}
    assert names == {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"}
    input_tokens = [
        json.loads(data)["sum"]
        for name, attributes, data in rows
        if name == "gen_ai.client.token.usage"
        and json.loads(attributes).get("gen_ai.token.type") == "input"
    ]
    assert sorted(input_tokens) == [USAGE[0][0], USAGE[1][0]]
