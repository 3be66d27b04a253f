"""OTLP/gRPC ingest: the OpenTelemetry SDK's gRPC exporters against a live studio.

The studio serves OTLP/gRPC on ``AGENTOP_OTLP_GRPC_PORT`` (the suite's default
is 0, off; these tests pick a free port) in the web server's own process.
Spans sent over gRPC become the same run as over HTTP; keys, limits, partial
success and storage failures answer with the status codes exporters act on.
Where the exporter hides the status (it only says SUCCESS or FAILURE), a raw
grpc stub call with real OTLP protobuf messages checks it.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from litestar.testing import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from app.core.settings import Settings, SettingsError
from app.main import create_app
from tests.conftest import LiveServer, free_port
from tests.test_otlp import genai_agent, provider_for, recorded_spans
from tests.test_storage_failure import disk_full

pytestmark = pytest.mark.both_backends

ROOT = Path(__file__).resolve().parent.parent
RESOURCE = Resource.create({"service.name": "external-agent"})
# What a span says, beside its ids and times
SPAN_FIELDS = (
    "kind span_kind name status status_message input_tokens output_tokens"
    " attributes resource scope depth"
).split()


class Studio:
    """A live studio (HTTP on ``url``, OTLP/gRPC on ``target``) and its keys."""

    def __init__(self, settings: Settings, keys: dict[str, str]) -> None:
        self.app = create_app(settings)
        self.keys = keys
        self.target = f"127.0.0.1:{settings.otlp_grpc_port}"
        self.server = LiveServer(self.app)
        self.url = self.server.url

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys["viewer"]})

    def runs(self) -> list[dict[str, Any]]:
        with self.api() as c:
            runs: list[dict[str, Any]] = c.get("/api/runs").json()["runs"]
            return runs

    def export(self, request: Any, metadata: tuple[tuple[str, str], ...] = (), **kw: Any) -> Any:
        """One raw TraceService/Export call; raises grpc.RpcError with the status."""
        with grpc.insecure_channel(self.target) as channel:
            return TraceServiceStub(channel).Export(request, metadata=metadata, timeout=30, **kw)


@pytest.fixture
def grpc_settings(settings: Settings) -> Settings:
    settings.otlp_grpc_port = free_port()
    return settings


@pytest.fixture
def studio(grpc_settings: Settings, keys: dict[str, str]) -> Iterator[Studio]:
    made = Studio(grpc_settings, keys)
    with made.server:
        yield made


def grpc_exporter(studio: Studio, key: str, **kw: Any) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=studio.target, insecure=True, headers={"x-api-key": key}, timeout=10, **kw
    )


def run_content(c: httpx.Client, run_id: str) -> dict[str, Any]:
    """What a run says, without what differs between two sends (ids, times)."""
    detail = c.get(f"/api/runs/{run_id}").json()
    run = detail["run"]
    fields = ("status", "source", "model", "provider", "prompt", "response", "tool_calls")
    return {
        "run": {key: run[key] for key in fields},
        "usage": (run["input_tokens"], run["output_tokens"], run["cost_usd"], run["cost_status"]),
        "messages": [(m["role"], m["content"]) for m in detail["messages"]],
        "tool_calls": [
            (t["name"], t["arguments"], t["result"], t["status"]) for t in detail["tool_calls"]
        ],
        # Each span whole (GET /api/runs/{id}/spans), in tree order.
        "spans": [
            {key: span[key] for key in SPAN_FIELDS}
            for span in c.get(f"/api/runs/{run_id}/spans").json()
        ],
    }


def test_sdk_grpc_exporter_makes_the_same_run_as_http(studio):
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(grpc_exporter(studio, studio.keys["member"])))
    genai_agent(provider.get_tracer("test"))
    provider.shutdown()
    [over_grpc] = studio.runs()

    over_http = provider_for(studio.url, studio.keys["member"])
    genai_agent(over_http.get_tracer("test"))
    over_http.shutdown()
    [other] = [r for r in studio.runs() if r["id"] != over_grpc["id"]]

    with studio.api() as c:
        via_grpc, via_http = run_content(c, over_grpc["id"]), run_content(c, other["id"])
    assert via_grpc == via_http
    assert via_grpc["run"]["source"] == "otlp" and via_grpc["run"]["status"] == "succeeded"
    assert via_grpc["run"]["response"] == "It is **18°C** and sunny in Paris."
    assert via_grpc["usage"][:2] == (1300, 230)
    spans = via_grpc["spans"]
    assert [span["name"] for span in spans] == [
        "invoke_agent weather",
        "chat mistral-small-latest",
        "execute_tool get_weather",
        "chat mistral-small-latest",
    ]
    # Typed as sent, resource and scope included.
    assert spans[1]["attributes"]["gen_ai.request.temperature"] == 0.2
    assert spans[1]["attributes"]["gen_ai.response.finish_reasons"] == ["tool_call"]
    assert spans[1]["resource"]["service.name"] == "external-agent"
    assert spans[1]["scope"]["name"] == "test"
    roles = [role for role, _ in via_grpc["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]


@pytest.mark.parametrize(
    ("header", "key", "code", "needle"),
    [
        (None, None, grpc.StatusCode.UNAUTHENTICATED, "send an API key in x-api-key"),
        ("x-api-key", "ao_wrong", grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked API key"),
        ("authorization", "ao_wrong", grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked"),
        ("x-api-key", "viewer", grpc.StatusCode.PERMISSION_DENIED, "needs the member role"),
        ("authorization", "viewer", grpc.StatusCode.PERMISSION_DENIED, "this key is viewer"),
    ],
)
def test_a_caller_without_a_member_key_is_refused(studio, header, key, code, needle):
    secret = studio.keys.get(key, key)
    value = f"Bearer {secret}" if header == "authorization" else secret
    metadata = ((header, value),) if header else ()
    with pytest.raises(grpc.RpcError) as refused:
        studio.export(encode_spans(recorded_spans(genai_agent)), metadata)
    assert refused.value.code() == code and needle in refused.value.details()
    assert studio.runs() == []


def test_without_auth_any_caller_may_export(grpc_settings, keys):
    grpc_settings.auth = False  # `serve --no-auth`, on loopback only
    studio = Studio(grpc_settings, keys)
    with studio.server:
        response = studio.export(encode_spans(recorded_spans(genai_agent)))
        assert response.partial_success.rejected_spans == 0
        assert len(studio.runs()) == 1


def test_sdk_exporter_with_a_wrong_key_fails_and_a_bearer_key_works(studio):
    spans = recorded_spans(genai_agent)
    wrong = grpc_exporter(studio, "ao_not-a-key")
    assert wrong.export(spans) == SpanExportResult.FAILURE
    wrong.shutdown()
    assert studio.runs() == []
    bearer = OTLPSpanExporter(
        endpoint=studio.target,
        insecure=True,
        headers={"authorization": f"Bearer {studio.keys['member']}"},
        timeout=10,
    )
    assert bearer.export(spans) == SpanExportResult.SUCCESS
    bearer.shutdown()
    [run] = studio.runs()
    assert run["source"] == "otlp" and run["tool_calls"] == 1


def test_gzip_compressed_exports_are_accepted(studio):
    exporter = grpc_exporter(studio, studio.keys["admin"], compression=grpc.Compression.Gzip)
    assert exporter.export(recorded_spans(genai_agent)) == SpanExportResult.SUCCESS
    exporter.shutdown()
    [run] = studio.runs()
    assert run["status"] == "succeeded" and run["input_tokens"] == 1300


def test_a_message_over_the_size_limit_is_resource_exhausted(studio):
    huge = ExportTraceServiceRequest()
    span = huge.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), bytes(range(1, 9)), "huge"
    # 17 MiB of one letter: a few KiB once gzipped, so only the inflated size is over.
    span.attributes.add(key="input.value", value=AnyValue(string_value="a" * (17 << 20)))
    member = (("x-api-key", studio.keys["member"]),)
    for compression in (None, grpc.Compression.Gzip):
        with pytest.raises(grpc.RpcError) as refused:
            studio.export(huge, member, compression=compression)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server goes on answering.
    response = studio.export(encode_spans(recorded_spans(genai_agent)), member)
    assert response == ExportTraceServiceResponse()
    assert len(studio.runs()) == 1


def partly_valid_request() -> ExportTraceServiceRequest:
    """Two spans of one trace: one with a 2-byte span id (invalid), one good tool span."""
    trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")

    def attribute(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    bad = Span(trace_id=trace_id, span_id=b"\x01\x02", name="short span id")
    good = Span(
        trace_id=trace_id,
        span_id=bytes.fromhex("b7ad6b7169203331"),
        name="search",
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_001_000_000_000,
        attributes=[
            attribute("openinference.span.kind", "TOOL"),
            attribute("tool.name", "search"),
            attribute("input.value", '{"q": "otlp"}'),
        ],
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[bad, good])])]
    )


def test_partial_success_is_reported_as_over_http(studio):
    request = partly_valid_request()
    response = studio.export(request, (("x-api-key", studio.keys["member"]),))
    assert response.partial_success.rejected_spans == 1
    assert response.partial_success.error_message
    [run] = studio.runs()
    assert run["status"] == "succeeded" and run["tool_calls"] == 1
    # HTTP answers the same request (a retry now: the good span is a duplicate) the same way.
    r = httpx.post(
        f"{studio.url}/v1/traces",
        content=gzip.compress(request.SerializeToString()),
        headers={
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "X-API-Key": studio.keys["member"],
        },
    )
    assert r.status_code == 200
    assert ExportTraceServiceResponse.FromString(r.content) == response
    assert len(studio.runs()) == 1


def test_storage_failure_is_unavailable_with_a_retry_delay(studio):
    studio.app.state.store.before_write = disk_full
    member = (("x-api-key", studio.keys["member"]),)
    request = encode_spans(recorded_spans(genai_agent))
    with pytest.raises(grpc.RpcError) as refused:
        studio.export(request, member)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot write to its database" in refused.value.details()
    trailing = dict(refused.value.trailing_metadata())
    retry = error_details_pb2.RetryInfo.FromString(trailing["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.seconds > 0
    # Space is back: the exporter's retry is recorded.
    studio.app.state.store.before_write = None
    assert studio.export(request, member).partial_success.rejected_spans == 0
    assert len(studio.runs()) == 1


def test_sdk_log_exporter_records_are_accepted(studio):
    """GenAI events as log records, in the context of the spans they belong to."""
    tracer_provider = TracerProvider(resource=RESOURCE)
    span_exporter = grpc_exporter(studio, studio.keys["member"])
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    logged = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logged))
    logger = logger_provider.get_logger("test")
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent helper"):
        with tracer.start_as_current_span(
            "chat mistral-small-latest",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "mistral-small"},
        ):
            logger.emit(event_name="gen_ai.user.message", body={"content": "Hello there"})
            logger.emit(
                event_name="gen_ai.choice",
                body={"index": 0, "message": {"role": "assistant", "content": "Hi!"}},
            )
            logger.emit(body="a plain log line", severity_text="INFO")
    tracer_provider.shutdown()
    records = logged.get_finished_logs()
    assert len(records) == 3

    exporter = OTLPLogExporter(
        endpoint=studio.target, insecure=True, headers={"x-api-key": studio.keys["member"]}
    )
    assert exporter.export(records) == LogRecordExportResult.SUCCESS
    exporter.shutdown()
    wrong = OTLPLogExporter(endpoint=studio.target, insecure=True, headers={"x-api-key": "ao_x"})
    assert wrong.export(records) == LogRecordExportResult.FAILURE
    wrong.shutdown()
    [run] = studio.runs()
    assert run["source"] == "otlp"
    with studio.api() as c:
        spans = c.get(f"/api/runs/{run['id']}/spans").json()
    [chat] = [span for span in spans if span["name"] == "chat mistral-small-latest"]
    bodies = [record["body"] for record in chat["logs"]]
    assert {"content": "Hello there"} in bodies and "a plain log line" in bodies


def listening_ports() -> set[int]:
    """The TCP ports this process listens on (Linux: its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_port_zero_listens_for_http_only(settings, keys):
    settings.otlp_grpc_port = 0
    before = listening_ports()
    with LiveServer(create_app(settings)) as server:
        assert listening_ports() - before == {server.port}


def test_the_grpc_port_listens_beside_http(grpc_settings, keys):
    before = listening_ports()
    with LiveServer(create_app(grpc_settings)) as server:
        assert listening_ports() - before == {server.port, grpc_settings.otlp_grpc_port}
    assert listening_ports() == before  # stopped with the app


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_on_a_busy_grpc_port_exits_with_one_line(tmp_path, busy_port):
    env = {**os.environ, "AGENTOP_OTLP_GRPC_PORT": str(busy_port)}
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())]
        + ["--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=60,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"error: invalid setting AGENTOP_OTLP_GRPC_PORT={busy_port}: ")
    assert "in use" in lines[0]
    assert r.stdout == ""  # nothing served, no admin key shown and lost


def test_an_app_on_a_busy_grpc_port_fails_to_start(settings, busy_port):
    settings.otlp_grpc_port = busy_port
    with pytest.raises(BaseExceptionGroup) as failed:  # as the test client's task group raises
        with TestClient(create_app(settings)):
            pass
    assert failed.group_contains(SettingsError, match=f"AGENTOP_OTLP_GRPC_PORT={busy_port}: ")


def test_without_grpcio_http_is_served_and_the_log_says_which_extra(
    grpc_settings, keys, monkeypatch, capfd
):
    monkeypatch.setitem(sys.modules, "grpc", None)
    with TestClient(create_app(grpc_settings)) as client:
        assert client.get("/api/health").json() == {"status": "ok"}
    [line] = [line for line in capfd.readouterr().err.splitlines() if "gRPC" in line]
    assert line.endswith(
        "OTLP/gRPC is off: OTLP/gRPC ingest needs the 'otel-grpc' extra (grpc is not installed):"
        " pip install 'agentop-studio[otel-grpc]'"
    )
