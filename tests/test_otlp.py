"""OTLP ingest: the real OpenTelemetry SDK exporter and OpenInference's Mistral instrumentor
export to the studio over HTTP; spans become runs like native ones, live as they arrive."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.conftest import wait_for_run
from tests.fake_mistral import Reply
from tests.prices import mistral_rates
from tests.receivers import wait_until

pytestmark = pytest.mark.both_backends

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def provider_for(url: str, key: str, service: str = "external-agent") -> TracerProvider:
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers={"X-API-Key": key})
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    # Simple (not batch): each span is exported as it ends, so the run fills in live.
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def genai_agent(tracer, fail: bool = False) -> None:
    """An agent loop instrumented by hand with the GenAI semantic conventions."""
    with tracer.start_as_current_span(
        "invoke_agent weather",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-42"},
    ) as root:
        user = [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
        with tracer.start_as_current_span(
            "chat mistral-small-latest",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "mistral_ai",
                "gen_ai.request.model": "mistral-small-latest",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 200,
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": "Be brief."}]
                ),
                "gen_ai.input.messages": json.dumps(user),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {
                                    "type": "tool_call",
                                    "id": "call1",
                                    "name": "get_weather",
                                    "arguments": {"city": "Paris"},
                                }
                            ],
                            "finish_reason": "tool_call",
                        }
                    ]
                ),
                "gen_ai.response.finish_reasons": ["tool_call"],
            },
        ):
            time.sleep(0.01)
        with tracer.start_as_current_span(
            "execute_tool get_weather",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": "call1",
                "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": "18°C, sunny",
            },
        ):
            time.sleep(0.01)
        history = user + [
            {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool_call",
                        "id": "call1",
                        "name": "get_weather",
                        "arguments": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "call1", "response": "18°C, sunny"}],
            },
        ]
        with tracer.start_as_current_span(
            "chat mistral-small-latest",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "mistral_ai",
                "gen_ai.request.model": "mistral-small-latest",
                "gen_ai.usage.input_tokens": 300,
                "gen_ai.usage.output_tokens": 30,
                "gen_ai.input.messages": json.dumps(history),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {"type": "text", "content": "It is **18°C** and sunny in Paris."}
                            ],
                        }
                    ]
                ),
            },
        ):
            time.sleep(0.01)
        if fail:
            root.set_status(Status(StatusCode.ERROR, "guardrail tripped"))


def test_sdk_exporter_protobuf_round_trip(live_server, app, keys):
    provider = provider_for(live_server.url, keys["member"])
    genai_agent(provider.get_tracer("test"))
    provider.shutdown()

    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["viewer"]}) as c:
        runs = c.get("/api/runs").json()["runs"]
        assert len(runs) == 1
        detail = c.get(f"/api/runs/{runs[0]['id']}").json()
        run = detail["run"]
        assert run["source"] == "otlp" and run["status"] == "succeeded"
        assert run["model"] == "mistral-small-latest" and run["provider"] == "mistral"
        # One trace in a conversation is no session yet (some SDKs give each run a new id).
        assert run["session_id"] is None
        assert run["params"]["temperature"] == 0.2
        assert run["prompt"] == "Weather in Paris?"
        assert run["response"] == "It is **18°C** and sunny in Paris."
        assert (run["input_tokens"], run["output_tokens"]) == (1300, 230)
        # USD per million tokens, as the app's price table has them.
        usd_in, usd_out = mistral_rates(app.state.store, "mistral-small", run["started_at"])
        expected = (1000 / 1e6 * usd_in + 200 / 1e6 * usd_out) + (
            300 / 1e6 * usd_in + 30 / 1e6 * usd_out
        )
        assert run["cost_status"] == "priced" and run["cost_usd"] == pytest.approx(expected)
        assert run["tool_calls"] == 1 and run["latency_ms"] > 20
        roles = [m["role"] for m in detail["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
        assert detail["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
        [tool] = detail["tool_calls"]
        assert tool["name"] == "get_weather" and tool["arguments"] == {"city": "Paris"}
        assert tool["result"] == "18°C, sunny" and tool["status"] == "ok"
        kinds = sorted(s["kind"] for s in detail["spans"])
        assert kinds == ["agent", "llm", "llm", "tool"]
        # Every span is kept with its own ids: the root, and its children under it.
        [root] = [s for s in detail["spans"] if not s["parent_span_id"]]
        assert root["name"] == "invoke_agent weather" and len(root["span_id"]) == 16
        assert all(s["parent_span_id"] == root["span_id"] for s in detail["spans"] if s != root)
        # Shown on the pages like a native run.
        page = c.get(f"/runs/{run['id']}")
        assert page.status_code == 200 and "18°C" in page.text and "get_weather" in page.text
        assert run["id"][:8] in c.get("/runs").text and run["id"][:8] in c.get("/").text

    # A second trace of the same conversation makes it a session of both runs.
    provider = provider_for(live_server.url, keys["member"])
    genai_agent(provider.get_tracer("test"))
    provider.shutdown()
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["viewer"]}) as c:
        runs = c.get("/api/runs").json()["runs"]
        assert len(runs) == 2 and {r["session_id"] for r in runs} == {"conv-42"}
        [session] = [x for x in c.get("/api/sessions").json()["sessions"] if x["name"] == "conv-42"]
        assert session["runs"] == 2 and session["finished"] == 2
        assert session["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in runs))
        assert session["input_tokens"] == 2600


def test_failed_root_span_fails_the_run(live_server, keys):
    provider = provider_for(live_server.url, keys["member"])
    genai_agent(provider.get_tracer("test"), fail=True)
    provider.shutdown()
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["viewer"]}) as c:
        [run] = c.get("/api/runs").json()["runs"]
        assert run["status"] == "failed" and run["error"] == "guardrail tripped"


def test_run_streams_live_while_spans_arrive(live_server, keys):
    provider = provider_for(live_server.url, keys["member"])
    tracer = provider.get_tracer("test")
    seen: list[str] = []
    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["member"]}) as c:
        with tracer.start_as_current_span(
            "agent", attributes={"openinference.span.kind": "AGENT", "input.value": "Say hi"}
        ) as root:
            with tracer.start_as_current_span(
                "llm",
                attributes={
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "mistral-small-latest",
                    "llm.provider": "mistralai",
                    "llm.token_count.prompt": 5,
                    "llm.token_count.completion": 2,
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": "Say hi",
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": "Hi!",
                },
            ):
                pass
            # The child is exported; the root is still open: the run is live.
            [run] = c.get("/api/runs").json()["runs"]
            assert run["status"] == "running" and run["source"] == "otlp"

            def follow() -> None:
                with c.stream("GET", f"/api/runs/{run['id']}/events") as stream:
                    for line in stream.iter_lines():
                        if line.startswith("event: "):
                            seen.append(line[7:])

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            wait_until(lambda: "llm_call_finished" in seen, 5, "llm_call_finished on the stream")
            root.set_attribute("output.value", "Hi!")
        reader.join(timeout=10)
    provider.shutdown()
    assert seen == ["run_started", "message", "message", "llm_call_finished", "run_finished"]


def test_openinference_mistral_instrumentor_against_fake_mistral(live_server, keys, fake_mistral):
    from mistralai.client import Mistral
    from openinference.instrumentation.mistralai import MistralAIInstrumentor

    fake_mistral.add(
        Reply(tool_calls=[{"name": "clock", "arguments": {"tz": "UTC"}}], usage=(50, 7)),
        Reply(text="It is noon.", usage=(70, 4)),
    )
    provider = provider_for(live_server.url, keys["member"], service="mistral-app")
    tracer = provider.get_tracer("app")
    instrumentor = MistralAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = Mistral(api_key="test-key", server_url=fake_mistral.url)
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "clock",
                    "description": "time",
                    "parameters": {"type": "object"},
                },
            }
        ]
        with tracer.start_as_current_span("agent", attributes={"openinference.span.kind": "AGENT"}):
            first = client.chat.complete(
                model="mistral-small-latest",
                tools=tools,
                messages=[{"role": "user", "content": "What time is it?"}],
            )
            call = first.choices[0].message.tool_calls[0]
            with tracer.start_as_current_span(
                "clock",
                attributes={
                    "openinference.span.kind": "TOOL",
                    "tool.name": "clock",
                    "tool.parameters": call.function.arguments,
                    "output.value": "12:00",
                },
            ):
                pass
            client.chat.complete(
                model="mistral-small-latest",
                messages=[
                    {"role": "user", "content": "What time is it?"},
                    {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
                    {"role": "tool", "content": "12:00", "tool_call_id": call.id, "name": "clock"},
                ],
            )
        # A bare call outside any agent span is a run of its own.
        client.chat.complete(
            model="mistral-small-latest", messages=[{"role": "user", "content": "ping"}]
        )
    finally:
        instrumentor.uninstrument()
        provider.shutdown()

    with httpx.Client(base_url=live_server.url, headers={"X-API-Key": keys["viewer"]}) as c:
        runs = c.get("/api/runs").json()["runs"]
        assert len(runs) == 2
        agent_run = next(r for r in runs if r["tool_calls"] == 1)
        detail = wait_for_run(c, agent_run["id"])
        run = detail["run"]
        assert run["status"] == "succeeded" and run["provider"] == "mistral"
        assert (run["input_tokens"], run["output_tokens"]) == (120, 11)
        assert run["cost_status"] == "priced" and run["response"] == "It is noon."
        roles = [m["role"] for m in detail["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant"]
        assert detail["tool_calls"][0]["arguments"] == {"tz": "UTC"}
        bare = next(r for r in runs if r["id"] != agent_run["id"])
        assert bare["status"] == "succeeded" and bare["response"] == "Echo: ping"
        assert bare["prompt"] == "ping"


def otlp_json(spans) -> dict:
    """OTLP/JSON of SDK spans: the protobuf JSON mapping with hex trace and span ids."""
    payload = json_format.MessageToDict(encode_spans(spans))
    for rs in payload["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return payload


def recorded_spans(fn) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "json-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    fn(provider.get_tracer("t"))
    return list(memory.get_finished_spans())


def test_json_round_trip_and_duplicate_exports(client):
    spans = recorded_spans(genai_agent)
    payload = otlp_json(spans)
    r = client.post(
        "/v1/traces", content=json.dumps(payload), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["agentop"]["accepted"] == 4 and len(body["agentop"]["runs"]) == 1
    run_id = body["agentop"]["runs"][0]
    # An exporter retrying the same batch adds nothing.
    again = client.post("/v1/traces", json=payload)
    assert again.json()["agentop"] == {"accepted": 0, "duplicates": 4, "runs": [run_id]}
    detail = client.get(f"/api/runs/{run_id}").json()
    assert len(detail["messages"]) == 5 and len(detail["tool_calls"]) == 1
    assert detail["run"]["input_tokens"] == 1300 and detail["run"]["status"] == "succeeded"


def test_protobuf_gzip_and_response_encoding(client):
    body = encode_spans(recorded_spans(genai_agent)).SerializeToString()
    r = client.post(
        "/v1/traces", content=gzip.compress(body), headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-protobuf")
    response = ExportTraceServiceResponse.FromString(r.content)
    assert response.partial_success.rejected_spans == 0
    [run] = client.get("/api/runs").json()["runs"]
    assert run["source"] == "otlp" and run["tool_calls"] == 1


def test_invalid_span_ids_are_rejected_as_partial_success(client):
    payload = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "", "spanId": "0102030405060708", "name": "no trace id"},
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "ok",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [
                                    {
                                        "key": "openinference.span.kind",
                                        "value": {"stringValue": "TOOL"},
                                    },
                                    {"key": "tool.name", "value": {"stringValue": "search"}},
                                    {
                                        "key": "input.value",
                                        "value": {"stringValue": '{"q": "otlp"}'},
                                    },
                                ],
                            },
                        ]
                    }
                ]
            }
        ]
    }
    r = client.post("/v1/traces", json=payload)
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] == "1"
    [run] = client.get("/api/runs").json()["runs"]
    assert run["status"] == "succeeded" and run["tool_calls"] == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b"\xff\xfe not protobuf", PROTOBUF, 400, "protobuf"),
        (b"{not json", {"Content-Type": "application/json"}, 400, "JSON"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "object"),
        (
            json.dumps(
                {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}
            ).encode(),
            {"Content-Type": "application/json"},
            400,
            "hex",
        ),
        (
            json.dumps({"resourceSpans": "nope"}).encode(),
            {"Content-Type": "application/json"},
            400,
            "resourceSpans",
        ),
        (b"\x1f\x8b broken gzip", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "gzip"),
        (b"hello", {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ],
)
def test_malformed_payloads_are_4xx_with_a_message(client, body, headers, status, needle):
    r = client.post("/v1/traces", content=body, headers=headers)
    assert r.status_code == status
    if headers["Content-Type"] == "application/x-protobuf":
        message = status_pb2.Status.FromString(r.content).message
    else:
        message = r.json()["detail"]
    assert needle in message
    assert client.get("/api/runs").json()["total"] == 0


def test_ingest_needs_a_member_key(app, keys):
    from litestar.testing import TestClient

    body = encode_spans(recorded_spans(genai_agent)).SerializeToString()
    with TestClient(app) as c:
        assert c.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 401
        r = c.post("/v1/traces", content=body, headers={**PROTOBUF, "X-API-Key": keys["viewer"]})
        assert r.status_code == 403
        r = c.post(
            "/v1/traces",
            content=body,
            headers={**PROTOBUF, "Authorization": f"Bearer {keys['member']}"},
        )
        assert r.status_code == 200
