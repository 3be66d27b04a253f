"""Benchmark: OTLP spans per second accepted over HTTP (``POST /v1/traces``) and gRPC, and durable.

Run from the repository root::

    .venv/bin/python bench/ingest.py                    # HTTP then gRPC, ~30 s on 2 cores
    .venv/bin/python bench/ingest.py --transport grpc   # one of them
    .venv/bin/python bench/ingest.py --quick            # smoke test
    .venv/bin/python bench/ingest.py --writer           # the writer alone, no HTTP
    .venv/bin/python bench/ingest.py --old DIR          # beside an older checkout, alternately
    .venv/bin/python bench/ingest.py --kill             # SIGKILL mid-load: acked spans lost?

For each transport, the real app (``create_app`` on a fresh temporary data
dir, API-key auth on, OTLP/gRPC on a free port) runs under uvicorn on
127.0.0.1 in a child process. ``--clients`` clients in this process (httpx,
or a grpc channel calling ``TraceService/Export``) each export
``--requests`` OTLP/protobuf requests, the way an OpenTelemetry SDK's batch
exporter does: every request carries ``--traces`` traces of ``--spans``
spans each (an agent root span, LLM spans with GenAI attributes,
input/output messages and token usage, and tool spans), encoded with
``opentelemetry-proto``. Both transports send the same bytes.

*Accepted* is spans in successful responses (HTTP 200, gRPC OK) per second of wall time. The studio
answers only after the request's transaction committed, so an accepted span
is a durable one; the *durable* figure checks that: after the last response
the benchmark opens the database file with a fresh SQLite connection and
counts what is there (one run per trace, finished, and a ``spans`` row per
span), timed from the first request to the end of that check. Exit status 1
if anything is missing. *Disk per span* is the database's pages (``dbstat``,
after a WAL checkpoint) divided by the spans, with the tables and indexes
that hold most of them.

``--writer`` times ``ingest_spans`` alone: each request's spans (decoded
beforehand) through ``Store.write_sync``, no HTTP, no decoding.

``--kill`` checks durability: the clients count the spans of every
acknowledged request while the server is killed with SIGKILL halfway
through the load; the studio is started again on the same data dir, and
every acknowledged span must be in its database ("0 acked spans lost").

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not again in a spawned server whose parent put an older tree (--code) first.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import httpx  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span  # noqa: E402

from bench.studio_server import free_port, start_studio, studio_server  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# A client sends bodies (serialised requests), gets back None or why it failed.
Send = Callable[[bytes], "str | None"]


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


@contextmanager
def http_client(url: str, target: str, key: str) -> Iterator[Send]:
    headers = {"Content-Type": "application/x-protobuf", "X-API-Key": key}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:

        def send(body: bytes) -> str | None:
            r = c.post("/v1/traces", content=body)
            if r.status_code != 200:
                return f"{r.status_code}: {r.text[:200]}"
            rejected = ExportTraceServiceResponse.FromString(r.content).partial_success
            return f"{rejected.rejected_spans} spans rejected" if rejected.rejected_spans else None

        yield send


@contextmanager
def grpc_client(url: str, target: str, key: str) -> Iterator[Send]:
    with grpc.insecure_channel(target) as channel:
        # No request serializer: the body goes as it is, the same bytes as over HTTP.
        export = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        metadata = (("x-api-key", key),)

        def send(body: bytes) -> str | None:
            try:
                response = export(body, metadata=metadata, timeout=60)
            except grpc.RpcError as exc:
                return f"{exc.code().name}: {exc.details()}"
            rejected = response.partial_success.rejected_spans
            return f"{rejected} spans rejected" if rejected else None

        yield send


CLIENTS = {"http": http_client, "grpc": grpc_client}


@dataclass
class Result:
    transport: str
    spans: int
    accepted_s: float
    durable_s: float
    latencies: list[float]
    failures: list[str]
    runs: int
    rows: int
    events: int
    disk: list[tuple[str, int]]
    server_cpu_s: float  # user + system CPU time of the studio process during the load


def run_transport(transport: str, payloads: list[list[bytes]], args: argparse.Namespace) -> Result:
    """The workload over one transport, against a fresh studio on a fresh database."""
    from app.auth.keys import create_key
    from app.store import Store

    client = CLIENTS[transport]
    tmp = Path(tempfile.mkdtemp(prefix=f"agentop-bench-ingest-{transport}-"))
    try:
        store = Store(tmp / "agentop.db")
        _, key = store.write_sync(create_key, "bench", "member")
        store.close()
        grpc_port = free_port()
        # Read by the spawned studio (it inherits this environment).
        os.environ["AGENTOP_OTLP_GRPC_PORT"] = str(grpc_port)
        server, url = start_studio(tmp, start_timeout_s=30)
        try:
            target = f"127.0.0.1:{grpc_port}"
            latencies: list[float] = []
            failures: list[str] = []
            lock = threading.Lock()

            def work(bodies: list[bytes]) -> None:
                with client(url, target, key) as send:
                    for body in bodies:
                        t0 = time.perf_counter()
                        failure = send(body)
                        with lock:
                            latencies.append(time.perf_counter() - t0)
                            if failure:
                                failures.append(failure)

            # Warm-up: one request, not counted (imports, first transaction, connection).
            warm_up = build_request(99, 0, 1, args.spans).SerializeToString()
            with client(url, target, key) as send:
                if failure := send(warm_up):
                    raise SystemExit(f"{transport} warm-up failed: {failure}")
            cpu_before = process_cpu_s(server.pid)
            start = time.perf_counter()
            threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted_s = time.perf_counter() - start
            server_cpu_s = process_cpu_s(server.pid) - cpu_before

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
            disk = disk_usage(tmp / "agentop.db")
        finally:
            server.terminate()
            server.join(timeout=15)
        spans = sum(len(p) for p in payloads) * args.traces * args.spans
        return Result(
            transport,
            spans,
            accepted_s,
            durable_s,
            latencies,
            failures,
            runs,
            rows,
            events,
            disk,
            server_cpu_s,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def disk_usage(path: Path) -> list[tuple[str, int]]:
    """Bytes of each table and index (``dbstat``), largest first, after a WAL checkpoint."""
    with sqlite3.connect(path) as db:
        db.execute("pragma wal_checkpoint(truncate)")
        return db.execute(
            "select name, sum(pgsize) from dbstat group by name order by 2 desc"
        ).fetchall()


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(result: Result, traces: int) -> bool:
    """Print one transport's figures; True if every span is there."""
    ok = not result.failures and result.runs == traces and result.rows == result.spans
    lat = sorted(result.latencies)
    name = {"http": "OTLP/HTTP", "grpc": "OTLP/gRPC"}[result.transport]
    print(f"  {name}")
    print(
        f"    accepted      {result.spans / result.accepted_s:8.0f} spans/s  "
        f"({result.spans} spans in {result.accepted_s:.2f} s, "
        f"{len(result.failures)} failed requests)"
    )
    print(
        f"    durable       {result.spans / result.durable_s:8.0f} spans/s  "
        f"(counted in SQLite from a fresh connection: {result.runs} runs finished, "
        f"{result.rows} span rows, {result.events} events; {result.durable_s:.2f} s)"
    )
    print(
        f"    latency       p50 {statistics.median(lat) * 1000:.0f} ms   "
        f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.0f} ms   max {lat[-1] * 1000:.0f} ms"
    )
    print(
        f"    server CPU    {result.server_cpu_s / result.spans * 1e6:8.0f} µs per span "
        f"({result.server_cpu_s:.2f} s of CPU in {result.accepted_s:.2f} s: "
        f"{result.server_cpu_s / result.accepted_s:.2f} cores busy)"
    )
    total = sum(size for _, size in result.disk)
    stored = result.rows + result.spans // traces  # and the warm-up trace's
    top = ", ".join(f"{name} {size / stored:.0f}" for name, size in result.disk[:6])
    print(f"    disk per span {total / stored:8.0f} B       ({top})")
    print(f"    check         {'OK' if ok else 'MISSING DATA'}")
    for failure in result.failures[:5]:
        print(f"    failure       {failure}")
    return ok


def run_writer(payloads: list[list[bytes]]) -> None:
    """``ingest_spans`` alone: one transaction per request, spans decoded beforehand.

    It runs in this thread on a connection of its own, so that what is timed
    is the writer's work only, whatever ``Store`` does around it.
    """
    from app.ingest.decode import spans_of
    from app.ingest.otlp import ingest_spans
    from app.store import Store
    from app.store.db import connect

    try:  # what the pipeline's decoding thread does (older trees, under --old, only decode)
        from app.ingest.prepare import traces_of as prepare
    except ImportError:
        prepare = spans_of
    batches = [
        prepare(ExportTraceServiceRequest.FromString(body))[0]
        for bodies in payloads
        for body in bodies
    ]
    tmp = Path(tempfile.mkdtemp(prefix="agentop-bench-writer-"))
    try:
        Store(tmp / "agentop.db").close()  # migrations
        db = connect(tmp / "agentop.db")
        elapsed = 0.0
        for i, batch in enumerate(batches):
            start = time.perf_counter()
            db.conn.execute("BEGIN IMMEDIATE")
            ingest_spans(db, batch)
            db.conn.execute("COMMIT")
            if i:  # the first one warms up
                elapsed += time.perf_counter() - start
        db.close()
        spans = sum(len(b) for b in batches[1:])
        print(
            f"  writer alone    {spans / elapsed:8.0f} spans/s  ({spans} spans in {elapsed:.2f} s, "
            f"{elapsed / spans * 1e6:.0f} µs per span, one transaction per request)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare(args: argparse.Namespace) -> None:
    """The same benchmark on this tree and on ``--old``'s, alternately, each in a fresh process."""
    import subprocess

    argv = [a for a in sys.argv[1:] if a != "--old" and a != args.old]
    for round_ in range(args.rounds):
        for name, code in (("this tree", str(ROOT)), ("--old", args.old)):
            out = subprocess.run(
                [sys.executable, __file__, *argv, "--code", code],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            print(f"  [{name} #{round_ + 1}: {code}]")
            for line in out.splitlines()[3:]:  # after the title, date and machine
                print(f"  {line}")


def run_kill(payloads: list[list[bytes]], args: argparse.Namespace) -> bool:
    """SIGKILL the studio mid-load, start it again: every acknowledged span must be there."""
    import signal

    from app.auth.keys import create_key
    from app.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="agentop-bench-kill-"))
    try:
        store = Store(tmp / "agentop.db")
        _, key = store.write_sync(create_key, "bench", "member")
        store.close()
        server, url = start_studio(tmp, start_timeout_s=30)
        acked: set[str] = set()
        sent = 0
        lock = threading.Lock()
        total = sum(len(p) for p in payloads)

        def work(bodies: list[bytes]) -> None:
            nonlocal sent
            with http_client(url, "", key) as send:
                for body in bodies:
                    try:
                        failure = send(body)
                    except httpx.HTTPError:
                        return  # the server is gone
                    with lock:
                        sent += 1
                        if failure is None:
                            request = ExportTraceServiceRequest.FromString(body)
                            acked.update(
                                s.span_id.hex()
                                for rs in request.resource_spans
                                for ss in rs.scope_spans
                                for s in ss.spans
                            )

        threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
        for t in threads:
            t.start()
        while sent < total // 2 and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        os.kill(server.pid, signal.SIGKILL)
        killed_at = sent
        for t in threads:
            t.join()
        server.join()
        with studio_server(tmp, start_timeout_s=30):
            with sqlite3.connect(tmp / "agentop.db") as db:
                stored = {row[0] for row in db.execute("select span_id from spans")}
        lost = len(acked - stored)
        print(
            f"  kill -9         killed after {killed_at} of {total} requests; "
            f"{len(acked)} spans acknowledged, {len(stored)} stored after restart"
        )
        print(f"    check         {lost} acked spans lost")
        return lost == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--transport", choices=["both", *CLIENTS], default="both")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="requests per client")
    parser.add_argument("--traces", type=int, default=10, help="traces per request")
    parser.add_argument("--spans", type=int, default=10, help="spans per trace")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--writer", action="store_true", help="time the writer alone (no HTTP)")
    parser.add_argument("--old", help="an older checkout's root: run both, alternately")
    parser.add_argument("--rounds", type=int, default=2, help="with --old: rounds")
    parser.add_argument("--code", help=argparse.SUPPRESS)  # the tree whose app/ is imported
    parser.add_argument("--kill", action="store_true", help="SIGKILL check instead of speed")
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, args.code)
    if args.quick:
        args.requests = 5
    transports = list(CLIENTS) if args.transport == "both" else [args.transport]

    # Built once: every transport sends the same bytes, each to a fresh database.
    payloads = [
        [
            build_request(c, i, args.traces, args.spans).SerializeToString()
            for i in range(args.requests)
        ]
        for c in range(args.clients)
    ]
    total_traces = args.clients * args.requests * args.traces
    print("AgentOp-Studio OTLP ingest benchmark")
    print(f"  date            {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(
        f"  machine         nproc {os.cpu_count()}, {platform.machine()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"grpcio {grpc.__version__}"
    )
    print(
        f"  workload        {args.clients} clients × {args.requests} requests × "
        f"{args.traces} traces × {args.spans} spans = {total_traces * args.spans} spans "
        f"({len(payloads[0][0]) / 1024:.0f} KiB per request, protobuf)"
    )
    print(f"  load average    {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    if args.kill:
        return 0 if run_kill(payloads, args) else 1
    if args.old and not args.code:
        compare(args)
        return 0
    if args.writer:
        run_writer(payloads)
        return 0
    ok = True
    for transport in transports:
        ok = report(run_transport(transport, payloads, args), total_traces) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
