"""Benchmark: OTLP spans per second accepted by ``POST /v1/traces``, and durable.

Run from the repository root::

    .venv/bin/python bench/ingest.py             # ~20 s on 2 cores
    .venv/bin/python bench/ingest.py --quick     # smoke test

The real app (``create_app`` on a temporary data dir, API-key auth on) runs
under uvicorn on 127.0.0.1 in a child process. ``--clients`` httpx clients in
this process each export ``--requests`` OTLP/protobuf requests, the way an
OpenTelemetry SDK's batch exporter does: every request carries
``--traces`` traces of ``--spans`` spans each (an agent root span, LLM spans
with GenAI attributes, input/output messages and token usage, and tool
spans), encoded with ``opentelemetry-proto``.

*Accepted* is spans in 200 responses per second of wall time. The studio
answers only after the request's transaction committed, so an accepted span
is a durable one; the *durable* figure checks that: after the last response
the benchmark opens the database file with a fresh SQLite connection and
counts what is there (one run per trace, finished, and a ``spans`` row per
span), timed from the first request to the end of that check. Exit status 1
if anything is missing.

Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span  # noqa: E402

from bench.studio_server import studio_server  # noqa: E402


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_request(client: int, index: int, traces: int, spans: int) -> ExportTraceServiceRequest:
    """``traces`` agent traces of ``spans`` spans: root + alternating LLM and tool spans."""
    now = time.time_ns()
    out = []
    for t in range(traces):
        trace_id = os.urandom(16)
        root_id = os.urandom(8)
        children = []
        history = [{"role": "user", "parts": [{"type": "text", "content": f"question {t}"}]}]
        for s in range(spans - 1):
            start = now + s * 1_000_000
            span = Span(
                trace_id=trace_id,
                span_id=os.urandom(8),
                parent_span_id=root_id,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 900_000,
            )
            if s % 2 == 0:
                span.name = "chat mistral-small-latest"
                reply = [{"role": "assistant", "parts": [{"type": "text", "content": f"step {s}"}]}]
                span.attributes.extend(
                    [
                        _kv("gen_ai.operation.name", "chat"),
                        _kv("gen_ai.provider.name", "mistral_ai"),
                        _kv("gen_ai.request.model", "mistral-small-latest"),
                        _kv("gen_ai.usage.input_tokens", 120 + s),
                        _kv("gen_ai.usage.output_tokens", 30),
                        _kv("gen_ai.input.messages", json.dumps(history)),
                        _kv("gen_ai.output.messages", json.dumps(reply)),
                    ]
                )
                history = history + reply
            else:
                span.name = "execute_tool search"
                span.attributes.extend(
                    [
                        _kv("gen_ai.operation.name", "execute_tool"),
                        _kv("gen_ai.tool.name", "search"),
                        _kv("gen_ai.tool.call.id", f"c{client}x{index}x{t}x{s}"),
                        _kv("gen_ai.tool.call.arguments", '{"q": "otlp"}'),
                        _kv("gen_ai.tool.call.result", "three results"),
                    ]
                )
            children.append(span)
        root = Span(
            trace_id=trace_id,
            span_id=root_id,
            name="invoke_agent bench",
            start_time_unix_nano=now,
            end_time_unix_nano=now + spans * 1_000_000,
        )
        root.attributes.extend(
            [_kv("gen_ai.operation.name", "invoke_agent"), _kv("output.value", "done")]
        )
        out.extend(children + [root])
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=out)])
    resource.resource.attributes.append(_kv("service.name", "bench-agent"))
    return ExportTraceServiceRequest(resource_spans=[resource])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="requests per client")
    parser.add_argument("--traces", type=int, default=10, help="traces per request")
    parser.add_argument("--spans", type=int, default=10, help="spans per trace")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.requests = 5

    from app.auth.keys import create_key
    from app.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="agentop-bench-ingest-"))
    try:
        store = Store(tmp / "agentop.db")
        _, key = store.write_sync(create_key, "bench", "member")
        store.close()
        with studio_server(tmp, start_timeout_s=30) as url:
            payloads = [
                [
                    build_request(c, i, args.traces, args.spans).SerializeToString()
                    for i in range(args.requests)
                ]
                for c in range(args.clients)
            ]
            headers = {"Content-Type": "application/x-protobuf", "X-API-Key": key}
            latencies: list[float] = []
            failures: list[str] = []
            lock = threading.Lock()

            def client(bodies: list[bytes]) -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                    for body in bodies:
                        t0 = time.perf_counter()
                        r = c.post("/v1/traces", content=body)
                        with lock:
                            latencies.append(time.perf_counter() - t0)
                            if r.status_code != 200:
                                failures.append(f"{r.status_code}: {r.text[:200]}")

            # Warm-up: one request, not counted (imports, first transaction).
            httpx.post(
                f"{url}/v1/traces",
                headers=headers,
                timeout=60,
                content=build_request(99, 0, 1, args.spans).SerializeToString(),
            )
            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(p,)) for p in payloads]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted_s = time.perf_counter() - start

            total_traces = args.clients * args.requests * args.traces
            total_spans = total_traces * args.spans
            with sqlite3.connect(tmp / "agentop.db") as db:
                runs = (
                    db.execute(
                        "select count(*) from runs where source = 'otlp' and status = 'succeeded'"
                    ).fetchone()[0]
                    - 1
                )  # minus warm-up
                rows = db.execute("select count(*) from spans").fetchone()[0] - args.spans
                events = db.execute("select count(*) from events").fetchone()[0]
            durable_s = time.perf_counter() - start

        ok = not failures and runs == total_traces and rows == total_spans
        lat = sorted(latencies)
        print("AgentOp-Studio OTLP ingest benchmark")
        print(f"  date            {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        print(
            f"  machine         nproc {os.cpu_count()}, {platform.machine()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
        )
        print(
            f"  workload        {args.clients} clients × {args.requests} requests × "
            f"{args.traces} traces × {args.spans} spans = {total_spans} spans "
            f"({len(payloads[0][0]) / 1024:.0f} KiB per request, protobuf)"
        )
        print(
            f"  accepted        {total_spans / accepted_s:8.0f} spans/s  "
            f"({total_spans} spans in {accepted_s:.2f} s, {len(failures)} failed requests)"
        )
        print(
            f"  durable         {total_spans / durable_s:8.0f} spans/s  "
            f"(counted in SQLite from a fresh connection: {runs} runs finished, {rows} span rows, "
            f"{events} events; {durable_s:.2f} s)"
        )
        print(
            f"  request latency p50 {statistics.median(lat) * 1000:.0f} ms   "
            f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.0f} ms   max {lat[-1] * 1000:.0f} ms"
        )
        print(f"  check           {'OK' if ok else 'MISSING DATA'}")
        for failure in failures[:5]:
            print(f"  failure         {failure}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
