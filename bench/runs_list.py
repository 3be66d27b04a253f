"""Benchmark: runs list (filters, search), dashboards and sessions at 100k to 1M runs; RSS.

Run from the repository root::

    .venv/bin/python bench/runs_list.py                  # seed 100k runs, measure, clean up
    .venv/bin/python bench/runs_list.py --runs 20000     # a smaller database
    .venv/bin/python bench/runs_list.py --data-dir /tmp/agentop-bench --keep   # reuse a seed
    .venv/bin/python bench/runs_list.py --runs 1000000 --days 1 --old-dashboard
        # 1M runs all in the last day; also time the previous dashboard (a scan) beside it
    .venv/bin/python bench/runs_list.py --data-dir /tmp/agentop-1m --keep --malloc glibc
        # the server's RSS without app.store.memory's remedies, to compare

On PostgreSQL (``bench/pg.py``: a throwaway cluster from Debian's binaries,
fsync on, else the server of ``--database-url``)::

    .venv/bin/python bench/runs_list.py --backend postgres             # 100k runs
    .venv/bin/python bench/runs_list.py --backend postgres --runs 1000000 --keep --seed-only
        # seed 1M runs and leave the cluster running: prints its URL and how to stop it
    .venv/bin/python bench/runs_list.py --database-url postgresql://agentop@127.0.0.1:PORT/DB
        # measure that database (seeded first if it has no runs yet)
    .venv/bin/python bench/runs_list.py --check-seed 3000
        # the bulk seeding against the triggers, cell by cell (exit 1 on a difference)

Seeding writes runs straight into a fresh database (after the app's own
migrations): mixed statuses, five models, 200 sessions, 90 days of start
times, prompts and answers drawn from a 3000-word vocabulary with Zipf-like
frequencies (the top words are in nearly every run; "zeppelin" is in one run
in a thousand), one evaluation per ten runs. Start times are spread over
``--days`` (90 by default; ``--days 1`` puts every run in the dashboard's
24-hour window). Both backends draw the same rows from ``seed_batches`` (same
``--seed``, same rng sequence), so they hold the same runs and evaluations.
On SQLite every trigger (full-text index, session totals, rollups) fires for
every seeded row, as for real runs. On PostgreSQL that costs 1.7k-3k runs/s, so
``bench/pg_seed.py`` loads the rows with ``COPY`` with the triggers off
(``session_replication_role = replica``), then builds the rollup tables and
``run_sessions`` with one ``INSERT … SELECT … GROUP BY`` each: every column is
the sum over its key of what the insert trigger adds per run, so the result
is what the triggers would have written (to the last bits of the float sums;
its docstring argues it column by column), and ``--check-seed N`` proves it by
seeding N runs both ways and comparing every rollup and session cell. The
full-text ``search`` column is generated, so COPY fills it; ``VACUUM
ANALYZE`` ends the seeding, so no autovacuum runs during the timed pages.

The app then serves it under uvicorn in a child process on 127.0.0.1
(``auth`` off: the port is loopback only; on PostgreSQL with the database's
URL as ``AGENTOP_DATABASE_URL`` would give it), and httpx sends each request
``--requests`` times in a row after two warm-up calls. The figures are whole
HTTP round trips: query, template rendering and transfer. The header names
the backend (PostgreSQL's server version) and the database's size
(``pg_database_size`` on PostgreSQL). ``--old-dashboard`` then serves the
same database with the dashboard's previous implementation (the scan kept in
``tests/dashboard_scan.py``) and times it too. The server's RSS is read from
``/proc`` right after start, after each page's requests (the table's last
column), idle ``--idle-seconds`` after the pages (the idle trim of
``app.store.memory`` waits for a quiet second), and at its peak while clients
post OTLP traces built by ``bench/ingest.py`` for ``--ingest-seconds``.
``--malloc`` serves without one or both of ``app.store.memory``'s remedies
(``glibc``: neither, the app before them) and ``--no-pandas`` without pandas
importable, as in the Docker image. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = [
    "mistral-small-latest",
    "mistral-large-latest",
    "ministral-8b-latest",
    "codestral-latest",
    "smollm2-135m",
]
STATUSES = ["succeeded"] * 85 + ["failed"] * 10 + ["interrupted"] * 5
DAY = 86400.0


# The seeded columns, in the order of seed_batches' tuples.
RUN_COLUMNS = (
    "id", "session_id", "status", "model", "provider", "params", "prompt", "response",
    "started_at", "ended_at", "latency_ms", "input_tokens", "output_tokens", "cost_usd",
    "cost_status", "tool_calls", "error",
)  # fmt: skip
EVAL_COLUMNS = ("run_id", "metric", "value", "passed", "source", "created_at")


def seed_batches(
    count: int, rng: random.Random, days: float = 90, now: float | None = None
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """``count`` runs started over the ``days`` before ``now``, 5,000 at a time, each
    batch with its evaluations (one per ten runs): (runs rows, evaluations rows) in the
    orders of RUN_COLUMNS and EVAL_COLUMNS. Both backends draw the same rows from it."""
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(3000)
    ]
    vocab[:5] = ["paris", "france", "capital", "weather", "invoice"]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]  # Zipf-like, as real text is
    cum_weights = list(itertools.accumulate(weights))  # once, not per choices() call
    now = time.time() if now is None else now
    batch: list[tuple[Any, ...]] = []
    for i in range(count):
        status = rng.choice(STATUSES)
        model = rng.choice(MODELS)
        t0 = now - days * DAY * (1 - i / count)
        latency = rng.uniform(200, 8000)
        words = rng.choices(vocab, cum_weights=cum_weights, k=rng.randint(6, 30))
        if i % 1000 == 0:
            words.append("zeppelin")  # a rare word: 0.1% of runs
        answer = rng.choices(vocab, cum_weights=cum_weights, k=rng.randint(15, 80))
        batch.append(
            (
                f"{i:016x}",
                f"exp-{rng.randrange(200):04d}" if rng.random() < 0.6 else None,
                status,
                model,
                "local" if model == "smollm2-135m" else "mistral",
                '{"temperature": 0.7, "max_tokens": 512, "tools": null}',
                " ".join(words) + "?",
                None if status == "failed" else " ".join(answer) + ".",
                t0,
                t0 + latency / 1000,
                latency,
                rng.randint(50, 3000),
                rng.randint(10, 800),
                rng.uniform(0, 0.01),
                "free" if model == "smollm2-135m" else "priced",
                rng.randint(0, 3),
                "boom" if status == "failed" else None,
            )
        )
        if len(batch) == 5000 or i == count - 1:
            # Drawn after the batch's runs: the batch size is part of the rng sequence.
            evaluations = [
                (
                    r[0],
                    rng.choice(("score", "exact_match")),
                    rng.uniform(1, 5),
                    rng.choice((0, 1, None)),
                    "api",
                    r[8] + 1,
                )  # fmt: skip
                for r in batch[::10]
            ]
            yield batch, evaluations
            batch = []


def seed(db_path: Path, count: int, rng: random.Random, days: float = 90) -> float:
    """Insert ``count`` runs started over the last ``days``; return the seconds it took."""
    from app.store import Store
    from app.store.db import connect

    Store(db_path).close()  # migrations, triggers, indexes
    started = time.perf_counter()
    conn = connect(db_path).conn
    conn.execute("PRAGMA cache_size = -262144")  # 256 MB: the indexes being filled stay cached
    runs_sql = f"insert into runs ({', '.join(RUN_COLUMNS)}) values ({', '.join('?' * 17)})"
    evals_sql = f"insert into evaluations ({', '.join(EVAL_COLUMNS)}) values (?, ?, ?, ?, ?, ?)"
    for runs, evaluations in seed_batches(count, rng, days):
        conn.executemany(runs_sql, runs)
        conn.executemany(evals_sql, evaluations)
        conn.commit()
    conn.execute("analyze")
    conn.commit()
    conn.execute("pragma wal_checkpoint(truncate)")
    conn.close()
    return time.perf_counter() - started


def serve(
    data_dir: str,
    port: int,
    old_dashboard: bool = False,
    malloc: str = "both",
    no_pandas: bool = False,
    database_url: str | None = None,
) -> None:
    """Child process: the app under uvicorn on 127.0.0.1 (its store in PostgreSQL at
    ``database_url`` when given, else SQLite in ``data_dir``)."""
    if no_pandas:
        # As in the Docker image: pandas comes only with the test extra (datasets),
        # and sqlite-utils imports it whenever it is installed (~65 MB of RSS).
        sys.modules["pandas"] = None  # type: ignore[assignment]
    import uvicorn

    from app.store import memory

    # Switch off what --malloc leaves out (app.store.memory): "glibc" is the app before.
    if malloc in ("trim", "glibc"):
        memory._MALLOPT = None
    if malloc in ("threshold", "glibc"):
        memory._TRIM = None

    from app.core.settings import Settings
    from app.main import create_app

    if old_dashboard:  # the previous implementation: a scan of every run in the window
        import app.dashboard.pages as pages
        from tests import dashboard_scan

        pages.dashboard_charts = dashboard_scan.dashboard_charts
        pages.totals = dashboard_scan.totals

    # OTLP/gRPC on as by default, but on a free port: another studio may hold 4317.
    settings = Settings(
        data_dir=Path(data_dir),
        auth=False,
        otlp_grpc_port=free_port(),
        database_url=database_url,
    )
    app = create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def busiest_session(db_path: Path, database_url: str | None) -> tuple[int, str]:
    """The id and name of the session with the most runs, on whichever backend."""
    sql = "select id, name from run_sessions order by runs desc, id limit 1"
    if database_url:
        import psycopg

        with psycopg.connect(database_url) as pg:
            row = pg.execute(sql).fetchone()
    else:
        conn = sqlite3.connect(db_path)
        row = conn.execute(sql).fetchone()
        conn.close()
    assert row is not None, "no session in the database"
    return int(row[0]), str(row[1])


def targets(session_id: int, session: str) -> list[tuple[str, str, dict[str, str]]]:
    week_to = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 30 * DAY))
    week_from = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 37 * DAY))
    htmx = {"HX-Request": "true"}
    return DASHBOARDS + [
        ("runs list, page 1", "/runs", {}),
        ("runs list, page 1000", "/runs?page=1000", {}),
        ("filter status=failed", "/runs?status=failed", htmx),
        ("filter model", "/runs?model=codestral-latest", htmx),
        ("filter session", f"/runs?session={session}", htmx),
        ("filter one week", f"/runs?from={week_from}&to={week_to}", htmx),
        ("search a word in ~all runs", "/runs?q=paris", htmx),
        ("search two words (both in ~60%)", "/runs?q=capital%20invoice", htmx),
        ("search a rare word (0.1%)", "/runs?q=zeppelin", htmx),
        (
            "status+model+text+dates",
            f"/runs?status=succeeded&model=smollm2-135m&q=weather&from={week_from}&to={week_to}",
            htmx,
        ),
        ("API runs, status=failed", "/api/runs?status=failed", {}),
        ("sessions list", "/sessions", {}),
        ("one session page", f"/sessions/{session_id}", {}),
        ("evals page, 7d", "/evals", {}),
        ("evals page, 90d, one session", f"/evals?range=90d&session={session}", {}),
    ]


DASHBOARDS: list[tuple[str, str, dict[str, str]]] = [
    ("dashboard (7d)", "/", {}),
    ("dashboard 24h", "/?range=24h", {}),
    ("dashboard 30d", "/?range=30d", {}),
    ("dashboard 90d", "/?range=90d", {}),
]


# label, request times (ms), response bytes, server RSS (MB) after that page's requests
Timings = list[tuple[str, list[float], int, float]]


def measure(
    url: str, pages: list[tuple[str, str, dict[str, str]]], requests: int, pid: int
) -> Timings:
    import httpx

    out = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for label, path, headers in pages:
            for _ in range(2):
                r = client.get(path, headers=headers)
                r.raise_for_status()
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                r = client.get(path, headers=headers)
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
            out.append((label, times, len(r.content), rss_mb(pid)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per page")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--data-dir", help="use (and seed if empty) this directory")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL (implies --backend postgres): use, and seed if empty, this database;"
        " with --check-seed, the server to make its two databases on (default: a throwaway"
        " server)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data directory (or PostgreSQL database)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--seed-only", action="store_true", help="seed (or find) the database, measure nothing"
    )
    parser.add_argument("--days", type=float, default=90, help="spread start times over")
    parser.add_argument(
        "--check-seed",
        type=int,
        metavar="N",
        help="PostgreSQL: seed N runs with the triggers and in bulk, compare the rollups and"
        " session totals cell by cell, exit 1 on any difference (no pages)",
    )
    parser.add_argument(
        "--old-dashboard", action="store_true", help="also time the previous dashboard (a scan)"
    )
    parser.add_argument("--old-requests", type=int, default=10)
    parser.add_argument(
        "--ingest-seconds", type=float, default=15, help="RSS under OTLP ingest (0: skip)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3,
        help="wait this long after the pages before reading the idle RSS",
    )
    parser.add_argument(
        "--malloc",
        choices=("both", "threshold", "trim", "glibc"),
        default="both",
        help="what of app.store.memory the server uses: both remedies (as shipped), the"
        " pinned mmap threshold or the idle trim alone, or neither (glibc's defaults)",
    )
    parser.add_argument(
        "--no-pandas",
        action="store_true",
        help="serve as the Docker image would: without pandas (test extra) importable",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(
            args.data_dir,
            args.port,
            args.old_dashboard,
            args.malloc,
            args.no_pandas,
            args.database_url,
        )
        return 0
    if args.database_url:
        args.backend = "postgres"

    print("AgentOp-Studio runs list benchmark")
    print(f"  date          {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(
        f"  machine       nproc {os.cpu_count()}, {platform.machine()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    if args.check_seed:
        return check_seed(args)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="agentop-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = data_dir / "agentop.db"
    with contextlib.ExitStack() as cleanup:
        if args.backend == "postgres":
            url: str | None = postgres_database(args, cleanup)
        else:
            url = None
            sqlite_database(args, db_path)
        if not args.seed_only:
            print(
                f"  malloc        {args.malloc} (app.store.memory; glibc: its defaults, as before)"
            )
            if args.no_pandas:
                print("  pandas        not importable by the server (as in the Docker image)")
            measure_and_print(args, data_dir, url)
    # On PostgreSQL the folder is the server's scratch (--keep keeps the database).
    if not args.data_dir and not (args.keep and args.backend == "sqlite"):
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"  load average  {open('/proc/loadavg').read().split()[:3]}")
    return 0


def sqlite_database(args: argparse.Namespace, db_path: Path) -> None:
    """Seed ``db_path`` unless it exists; print what it holds."""
    if db_path.exists():
        conn = sqlite3.connect(db_path)
        have = conn.execute("select count(*) from runs").fetchone()[0]
        conn.execute("pragma wal_checkpoint(truncate)")  # a long WAL slows every read
        conn.close()
        print(f"  database      reusing {db_path} ({have:,} runs)")
    else:
        took = seed(db_path, args.runs, random.Random(args.seed), args.days)
        print(
            f"  seeding       {args.runs:,} runs over {args.days:g} day(s) in {took:.1f} s"
            f" ({args.runs / took:,.0f} runs/s, triggers: rollups, sessions, full-text index)"
        )
    size = sum(p.stat().st_size for p in db_path.parent.glob("agentop.db*")) / 1e6
    print(f"  database      {size:.0f} MB (incl. WAL)")


def postgres_database(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> str:
    """The URL of a seeded PostgreSQL database: ``--database-url`` (seeded there if it
    has no runs yet), else a new one on a throwaway server (kept running with --keep)."""
    from bench import pg_seed
    from bench.pg import fresh_database, postgres_server, scalar, server_version

    if args.database_url:
        url = args.database_url
        have = scalar(url, "select count(*) from runs") if pg_seed.migrated(url) else 0
    else:
        if args.keep:
            server, cluster = pg_seed.kept_server()
            print(f"  cluster       {cluster} (kept; stop: {pg_seed.stop_command(cluster)})")
        else:
            server = cleanup.enter_context(postgres_server(None))
        url, have = fresh_database(server, "runs"), 0
    print(f"  backend       {server_version(url)}, {url}")
    if have:
        print(f"  database      reusing it ({have:,} runs)")
    else:
        pg_seed.migrate(url)
        batches = seed_batches(args.runs, random.Random(args.seed), args.days)
        took = pg_seed.bulk_seed(url, batches, RUN_COLUMNS, EVAL_COLUMNS)
        print(
            f"  seeding       {args.runs:,} runs over {args.days:g} day(s) in"
            f" {took['total']:.1f} s ({args.runs / took['total']:,.0f} runs/s: COPY with the"
            f" triggers off {took['copy']:.1f} s, rollups and sessions backfilled"
            f" {took['backfill']:.1f} s, VACUUM ANALYZE {took['vacuum']:.1f} s)"
        )
    size = scalar(url, "select pg_database_size(current_database())") / 1e6
    print(f"  database      {size:.0f} MB (pg_database_size)")
    if args.keep:
        print(f"  kept          {url} (reuse: --database-url {url})")
    return str(url)


def check_seed(args: argparse.Namespace) -> int:
    """--check-seed N: the bulk seeding against the triggers (bench/pg_seed.py)."""
    from bench import pg_seed
    from bench.pg import postgres_server, server_version

    now = time.time()  # one clock for both, so that both put each run in the same hour

    def batches() -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        return seed_batches(args.check_seed, random.Random(args.seed), args.days, now)

    with postgres_server(args.database_url) as server:
        print(f"  backend       {server_version(server)}, check of the bulk seeding")
        print(f"  runs          {args.check_seed:,} over {args.days:g} day(s), seed {args.seed}")
        return pg_seed.check_seed(server, batches, RUN_COLUMNS, EVAL_COLUMNS, keep=args.keep)


def measure_and_print(args: argparse.Namespace, data_dir: Path, url: str | None) -> None:
    """Serve the seeded database, time the pages, print the tables and the RSS."""
    results = serve_and_measure(
        data_dir,
        targets(*busiest_session(data_dir / "agentop.db", url)),
        args.requests,
        args.ingest_seconds,
        args.idle_seconds,
        malloc=args.malloc,
        no_pandas=args.no_pandas,
        database_url=url,
    )
    print_table("page (server in a child process, 127.0.0.1)", results[0])
    print(f"  ({args.requests} timed requests each, after 2 warm-up requests;")
    print("   RSS: the server's after that page's requests)")
    memory = results[1]
    print(f"\n  server RSS    {memory.start} right after start;")
    print(f"                {memory.idle} idle {args.idle_seconds:g} s after the pages above")
    if memory.ingest_peak:
        spans = memory.spans
        print(
            f"                peak {memory.ingest_peak:.0f} MB while 2 clients posted OTLP for"
            f" {args.ingest_seconds:.0f} s ({spans:,} spans accepted,"
            f" {spans / args.ingest_seconds:,.0f}/s)"
        )
    if args.old_dashboard:
        old = serve_and_measure(
            data_dir, DASHBOARDS, args.old_requests, old_dashboard=True, database_url=url
        )
        print_table("previous dashboard (a scan of the window)", old[0])
        print(f"  ({args.old_requests} timed requests each, after 2 warm-up requests)")


def print_table(title: str, results: Timings) -> None:
    print(f"\n  {title:46} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'KB':>6} {'RSS MB':>7}")
    for label, times, size_bytes, rss in results:
        print(
            f"  {label:46} {statistics.median(times):8.1f} {percentile(times, 95):8.1f}"
            f" {max(times):8.1f} {size_bytes / 1024:6.0f} {rss:7.0f}"
        )


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/PID/status in MB: VmRSS, RssAnon (heap), RssFile (libraries)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Rss:
    """One RSS reading with its split: anonymous memory (heaps) and mapped files (libraries)."""

    total: float
    anon: float
    file: float

    @classmethod
    def of(cls, pid: int) -> Rss:
        return cls(rss_mb(pid), rss_mb(pid, "RssAnon"), rss_mb(pid, "RssFile"))

    def __str__(self) -> str:
        return f"{self.total:.0f} MB ({self.anon:.0f} anonymous, {self.file:.0f} files)"


@dataclass
class Memory:
    """The server's RSS over one benchmark: at start, idle after the pages, under ingest."""

    start: Rss
    idle: Rss | None = None
    ingest_peak: float = 0.0
    spans: int = 0


def ingest_rss(url: str, pid: int, seconds: float) -> tuple[float, int]:
    """Post OTLP traces (bench/ingest.py's requests) from 2 clients; peak RSS and spans sent."""
    import threading

    import httpx

    from bench.otlp_load import build_request

    stop = time.monotonic() + seconds
    sent = [0, 0]

    def client(n: int) -> None:
        headers = {"Content-Type": "application/x-protobuf"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            i = 0
            while time.monotonic() < stop:
                body = build_request(n, i, 10, 10).SerializeToString()
                r = c.post("/v1/traces", content=body)
                r.raise_for_status()
                sent[n] += 100
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    peak = rss_mb(pid)
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mb(pid))
        time.sleep(0.1)  # a sampling interval, not a wait for work
    return peak, sum(sent)


def serve_and_measure(
    data_dir: Path,
    pages: list[tuple[str, str, dict[str, str]]],
    requests: int,
    ingest_seconds: float = 0,
    idle_seconds: float = 0,
    old_dashboard: bool = False,
    malloc: str = "both",
    no_pandas: bool = False,
    database_url: str | None = None,
) -> tuple[Timings, Memory]:
    port = free_port()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    cmd += ["--old-dashboard"] if old_dashboard else []
    cmd += ["--malloc", malloc] + (["--no-pandas"] if no_pandas else [])
    cmd += ["--database-url", database_url] if database_url else []
    proc = subprocess.Popen(cmd, cwd=str(ROOT))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        memory = Memory(start=Rss.of(proc.pid))
        results = measure(url, pages, requests, proc.pid)
        # Idle means no request for a while: memory handed back when the server is
        # quiet (app.store.memory) counts, memory it keeps for good does too.
        time.sleep(idle_seconds)
        memory.idle = Rss.of(proc.pid)
        if ingest_seconds:
            memory.ingest_peak, memory.spans = ingest_rss(url, proc.pid, ingest_seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return results, memory


if __name__ == "__main__":
    raise SystemExit(main())
