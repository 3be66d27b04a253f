"""Benchmark: OTLP spans per second accepted over HTTP (``POST /v1/traces``) and gRPC, and durable.

Run from the repository root::

    .venv/bin/python bench/ingest.py                    # HTTP then gRPC, ~30 s on 2 cores
    .venv/bin/python bench/ingest.py --transport grpc   # one of them
    .venv/bin/python bench/ingest.py --quick            # smoke test
    .venv/bin/python bench/ingest.py --writer           # the writer alone, no HTTP
    .venv/bin/python bench/ingest.py --old DIR          # beside an older checkout, alternately
    .venv/bin/python bench/ingest.py --kill             # SIGKILL mid-load: acked spans lost?
    .venv/bin/python bench/ingest.py --backend postgres # the same on PostgreSQL
    .venv/bin/python bench/ingest.py --backend both     # SQLite, then PostgreSQL, side by side
    .venv/bin/python bench/ingest.py --backend postgres --database-url postgresql://u@host/db

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

On PostgreSQL (``--backend postgres``, or ``both`` for SQLite first and then
PostgreSQL, each transport on the same payload bytes) the studio gets
``AGENTOP_DATABASE_URL`` for a fresh database per transport, on a throwaway
cluster of Debian's binaries with fsync on (``bench/pg.py``), or on the server
of ``--database-url`` (its user must be allowed to create databases; they
are dropped at the end). The durable counts come from a fresh PostgreSQL
connection; disk per span is ``pg_total_relation_size`` of each table (its
indexes and TOAST included) after a ``VACUUM``. The studio's CPU no longer
includes the database's work there, so *database CPU* adds PostgreSQL's:
the CPU time of the cluster's postmaster and all its processes (backends,
WAL writer, checkpointer, autovacuum, of every database of that cluster),
measured when the server runs on this machine, else not shown. ``both``
ends with a table: backend × transport → accepted and durable spans/s, CPU
per span (studio, database), disk per span.

``--writer`` times ``ingest_spans`` alone: each request's spans (decoded
beforehand) through ``Store.write_sync``, no HTTP, no decoding.

``--kill`` checks durability: the clients count the spans of every
acknowledged request while the server is killed with SIGKILL halfway
through the load; the studio is started again on the same data dir (or the
same PostgreSQL database: the PostgreSQL server itself is not killed), and
every acknowledged span must be in its database ("0 acked spans lost").

``--writer`` and ``--old`` measure SQLite only. Nothing here leaves 127.0.0.1
(unless ``--database-url`` names another host).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
)

from bench.otlp_load import CLIENTS, build_request, http_client  # noqa: E402
from bench.studio_server import free_port, start_studio, studio_server  # noqa: E402

BACKENDS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


@dataclass(frozen=True)
class BenchDatabase:
    """Where one studio of the benchmark keeps its data: SQLite in ``data_dir``, or the
    PostgreSQL database at ``url`` (``data_dir`` then only holds the unended-runs file)."""

    backend: str
    data_dir: Path
    url: str | None = None

    @property
    def path(self) -> Path:
        return self.data_dir / "agentop.db"

    def create_key(self) -> str:
        """A member API key, written before the studio starts (migrations included)."""
        from app.auth.keys import create_key
        from app.store import Store

        # No url keyword on SQLite: an older tree's Store (--old) has none.
        store = Store(self.path, url=self.url) if self.url else Store(self.path)
        _, key = store.write_sync(create_key, "bench", "member")
        store.close()
        return str(key)

    def counts(self) -> tuple[int, int, int]:
        """Finished OTLP runs, span rows and event rows, read on a fresh connection."""
        queries = (
            "select count(*) from runs where source = 'otlp' and status = 'succeeded'",
            "select count(*) from spans",
            "select count(*) from events",
        )
        if self.url:
            from bench.pg import scalar

            runs, rows, events = (int(scalar(self.url, sql)) for sql in queries)
            return runs, rows, events
        with sqlite3.connect(self.path) as db:
            runs, rows, events = (db.execute(sql).fetchone()[0] for sql in queries)
            return runs, rows, events

    def span_ids(self) -> set[str]:
        """The ``span_id`` of every stored span."""
        if self.url:
            from bench.pg import scalar

            return set(scalar(self.url, "select array_agg(span_id) from spans") or ())
        with sqlite3.connect(self.path) as db:
            return {row[0] for row in db.execute("select span_id from spans")}

    def disk(self) -> list[tuple[str, int]]:
        """Bytes per table (SQLite: and per index), largest first."""
        if self.url:
            from bench.pg import disk_usage as pg_disk_usage

            return pg_disk_usage(self.url)
        return disk_usage(self.path)


@contextmanager
def bench_database(backend: str, label: str, server: str | None) -> Iterator[BenchDatabase]:
    """A fresh data dir (and, for PostgreSQL, a fresh database on ``server``) for the
    block; the studios started in it inherit ``AGENTOP_DATABASE_URL`` from this process."""
    tmp = Path(tempfile.mkdtemp(prefix=f"agentop-bench-{label}-"))
    before = os.environ.get("AGENTOP_DATABASE_URL")
    url = None
    try:
        if backend == "postgres":
            from bench.pg import fresh_database

            assert server is not None
            url = fresh_database(server, label.replace("-", "_"))
            os.environ["AGENTOP_DATABASE_URL"] = url
        else:  # SQLite means SQLite, whatever the shell running the benchmark has set
            os.environ.pop("AGENTOP_DATABASE_URL", None)
        yield BenchDatabase(backend, tmp, url)
    finally:
        if before is None:
            os.environ.pop("AGENTOP_DATABASE_URL", None)
        else:
            os.environ["AGENTOP_DATABASE_URL"] = before
        if url and server:
            from bench.pg import drop_database

            drop_database(server, url)
        shutil.rmtree(tmp, ignore_errors=True)


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
    backend: str = "sqlite"
    # PostgreSQL's processes during the load (None: SQLite, or a server on another machine)
    database_cpu_s: float | None = None

    def stored(self, traces: int) -> int:
        """Span rows in the database: the load's and the warm-up trace's."""
        return self.rows + self.spans // traces


def run_transport(
    transport: str, payloads: list[list[bytes]], args: argparse.Namespace, db: BenchDatabase
) -> Result:
    """The workload over one transport, against a fresh studio on the fresh database ``db``."""
    client = CLIENTS[transport]
    key = db.create_key()
    grpc_port = free_port()
    # Read by the spawned studio (it inherits this environment).
    os.environ["AGENTOP_OTLP_GRPC_PORT"] = str(grpc_port)
    postmaster = postmaster_pid(db.url) if db.url else None
    server, url = start_studio(db.data_dir, start_timeout_s=30)
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
        db_cpu_before = cluster_cpu_s(postmaster)
        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        accepted_s = time.perf_counter() - start
        server_cpu_s = process_cpu_s(server.pid) - cpu_before
        db_cpu_s = cluster_cpu_s(postmaster) - db_cpu_before if postmaster else None

        runs, rows, events = db.counts()
        runs -= 1  # minus warm-up
        rows -= args.spans
        durable_s = time.perf_counter() - start
        disk = db.disk()
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
        db.backend,
        db_cpu_s,
    )


def disk_usage(path: Path) -> list[tuple[str, int]]:
    """Bytes of each table and index (``dbstat``), largest first, after a WAL checkpoint."""
    with sqlite3.connect(path) as db:
        db.execute("pragma wal_checkpoint(truncate)")
        return db.execute(
            "select name, sum(pgsize) from dbstat group by name order by 2 desc"
        ).fetchall()


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; 0 elsewhere)."""
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def _proc_stat(pid: int | None) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or []."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def postmaster_pid(url: str) -> int | None:
    """The PID of the postmaster serving ``url`` if it runs on this machine, else None.

    The checkpointer's parent is the postmaster; a PID read from a server
    elsewhere would name some unrelated local process, hence the host check.
    """
    import psycopg

    from bench.pg import scalar

    host = str(psycopg.conninfo.conninfo_to_dict(url).get("host") or "")
    if not (host.startswith("/") or host in ("", "localhost", "127.0.0.1", "::1")):
        return None
    pid = scalar(url, "select pid from pg_stat_activity where backend_type = 'checkpointer'")
    fields = _proc_stat(pid)
    if not fields:
        return None
    parent = int(fields[1])
    try:
        is_postgres = b"postgres" in Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        return None
    return parent if is_postgres else None


def cluster_cpu_s(postmaster: int | None) -> float:
    """CPU seconds used so far by a PostgreSQL cluster: its postmaster, the children it
    has reaped (``cutime``, ``cstime``: backends that exited) and those still running."""
    if postmaster is None:
        return 0.0
    fields = _proc_stat(postmaster)
    if not fields:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])
    for stat in Path("/proc").glob("[0-9]*/stat"):
        child = _proc_stat(int(stat.parent.name))
        if child and int(child[1]) == postmaster:
            ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def report(result: Result, traces: int, labelled: bool = False) -> bool:
    """Print one transport's figures; True if every span is there. ``labelled`` names
    the backend in the heading (when not SQLite alone)."""
    ok = not result.failures and result.runs == traces and result.rows == result.spans
    lat = sorted(result.latencies)
    name = {"http": "OTLP/HTTP", "grpc": "OTLP/gRPC"}[result.transport]
    backend = BACKENDS[result.backend]
    print(f"  {name} on {backend}" if labelled else f"  {name}")
    print(
        f"    accepted      {result.spans / result.accepted_s:8.0f} spans/s  "
        f"({result.spans} spans in {result.accepted_s:.2f} s, "
        f"{len(result.failures)} failed requests)"
    )
    print(
        f"    durable       {result.spans / result.durable_s:8.0f} spans/s  "
        f"(counted in {backend} from a fresh connection: {result.runs} runs finished, "
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
    if result.database_cpu_s is not None:
        print(
            f"    database CPU  {result.database_cpu_s / result.spans * 1e6:8.0f} µs per span "
            f"({result.database_cpu_s:.2f} s of CPU in PostgreSQL's processes: "
            f"{result.database_cpu_s / result.accepted_s:.2f} cores busy)"
        )
    total = sum(size for _, size in result.disk)
    stored = result.stored(traces)
    top = ", ".join(f"{name} {size / stored:.0f}" for name, size in result.disk[:6])
    if result.backend == "postgres":
        top = f"tables with their indexes and TOAST: {top}"
    print(f"    disk per span {total / stored:8.0f} B       ({top})")
    print(f"    check         {'OK' if ok else 'MISSING DATA'}")
    for failure in result.failures[:5]:
        print(f"    failure       {failure}")
    return ok


def side_by_side(results: list[Result], traces: int) -> None:
    """One line per backend × transport: the figures to compare at a glance."""
    row = "    {:<10} {:<12} {:>9} {:>10} {:>12} {:>14} {:>8}"
    print("  side by side")
    print(row.format("", "", "accepted", "durable", "studio CPU", "database CPU", "disk"))
    print(row.format("", "", "spans/s", "spans/s", "µs/span", "µs/span", "B/span"))
    for r in results:
        name = {"http": "HTTP", "grpc": "gRPC"}[r.transport]
        db_cpu = "—" if r.database_cpu_s is None else f"{r.database_cpu_s / r.spans * 1e6:.0f}"
        disk = sum(size for _, size in r.disk) / r.stored(traces)
        print(
            row.format(
                BACKENDS[r.backend],
                name,
                f"{r.spans / r.accepted_s:.0f}",
                f"{r.spans / r.durable_s:.0f}",
                f"{r.server_cpu_s / r.spans * 1e6:.0f}",
                db_cpu,
                f"{disk:.0f}",
            )
        )


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


def run_kill(payloads: list[list[bytes]], db: BenchDatabase) -> bool:
    """SIGKILL the studio mid-load, start it again: every acknowledged span must be there."""
    key = db.create_key()
    server, url = start_studio(db.data_dir, start_timeout_s=30)
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
    server.kill()  # SIGKILL, the studio only: a PostgreSQL server lives on
    killed_at = sent
    for t in threads:
        t.join()
    server.join()
    with studio_server(db.data_dir, start_timeout_s=30):
        stored = db.span_ids()
    lost = len(acked - stored)
    print(
        f"  kill -9         killed after {killed_at} of {total} requests; "
        f"{len(acked)} spans acknowledged, {len(stored)} stored after restart"
    )
    print(f"    check         {lost} acked spans lost")
    return lost == 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--transport", choices=["both", *CLIENTS], default="both")
    parser.add_argument(
        "--backend",
        choices=[*BACKENDS, "both"],
        default="sqlite",
        help="the studio's store; both: each transport on SQLite, then on PostgreSQL",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to use (its user creates and drops databases) "
        "instead of a throwaway cluster",
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="requests per client")
    parser.add_argument("--traces", type=int, default=10, help="traces per request")
    parser.add_argument("--spans", type=int, default=10, help="spans per trace")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--writer", action="store_true", help="time the writer alone (no HTTP; SQLite only)"
    )
    parser.add_argument(
        "--old", help="an older checkout's root: run both, alternately (SQLite only)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --old: rounds")
    parser.add_argument("--code", help=argparse.SUPPRESS)  # the tree whose app/ is imported
    parser.add_argument(
        "--kill",
        action="store_true",
        help="SIGKILL check instead of speed (the studio only, on either backend)",
    )
    args = parser.parse_args()
    if args.backend != "sqlite" and (args.writer or args.old):
        parser.error("--writer and --old measure SQLite only")
    if args.database_url and args.backend == "sqlite":
        parser.error("--database-url needs --backend postgres or both")
    return args


def main() -> int:
    args = parse_args()
    if args.code:
        sys.path.insert(0, args.code)
    if args.quick:
        args.requests = 5
    transports = list(CLIENTS) if args.transport == "both" else [args.transport]
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]

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
    if args.old and not args.code and not args.kill:
        compare(args)
        return 0
    if args.writer and not args.kill:
        run_writer(payloads)
        return 0
    with ExitStack() as stack:
        server = None
        if "postgres" in backends:
            # Imported here: psycopg is an optional extra, SQLite runs need none of it.
            from bench.pg import postgres_server, server_version

            server = stack.enter_context(postgres_server(args.database_url))
            where = "the given server" if args.database_url else "a throwaway cluster, fsync on"
            print(f"  database        {server_version(server)} ({where})")
        status = run(payloads, args, transports, backends, server)
    return status


def run(
    payloads: list[list[bytes]],
    args: argparse.Namespace,
    transports: list[str],
    backends: list[str],
    server: str | None,
) -> int:
    """The kill check, or each transport on each backend; the exit status."""
    labelled = backends != ["sqlite"]
    traces = args.clients * args.requests * args.traces
    ok = True
    if args.kill:
        for backend in backends:
            if labelled:
                print(f"  {BACKENDS[backend]}")
            with bench_database(backend, "kill", server) as db:
                ok = run_kill(payloads, db) and ok
        return 0 if ok else 1
    results = []
    for transport in transports:
        for backend in backends:
            with bench_database(backend, f"ingest-{transport}", server) as db:
                results.append(run_transport(transport, payloads, args, db))
            ok = report(results[-1], traces, labelled) and ok
    if len(backends) > 1:
        side_by_side(results, traces)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
