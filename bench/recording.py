"""Benchmark: what recording every agent event costs, and how fast SSE delivers it.

Run from the repository root::

    .venv/bin/python bench/recording.py            # both parts, ~1-2 minutes on 2 cores
    .venv/bin/python bench/recording.py --quick    # fewer repetitions, a smoke test

Part 1 (recording overhead) runs ``agents.loop.run_agent`` in this process with
a scripted provider (no network, deterministic: ``--pieces`` token pieces per
answer, one tool round with an in-memory tool), first into a sink that only
counts events, then into the real ``app.runs.recorder.Recorder`` (a ``Store`` on a
temporary file plus a ``Broker``). The difference per event is what recording
costs the agent loop. A breakdown times the parts of that cost separately.

Part 2 (SSE delivery latency) starts the real app (``create_app`` with the
scripted provider passed through ``extra_providers``) under uvicorn on
127.0.0.1 in a child process, starts ``--runs`` runs through ``POST /api/runs``
and follows them with ``--clients`` SSE clients (httpx, in this process). The
provider paces its pieces (``--pace`` seconds apart) so the runs stream live.
Latency = time a client parsed an event minus the event's ``payload.at``.
Token streaming is held back until every client has received the run's first
event (so it is subscribed); events before that are replayed from SQLite and
are counted for the exactly-once check but not for latency.

With ``--inproc`` the server runs instead in a thread of this process
(``tests.conftest.LiveServer``), sharing the GIL with the 50 clients.

``--backend postgres`` runs part 2 on PostgreSQL (a throwaway server from
Debian's binaries, fsync on, or ``--database-url``'s; ``bench/pg.py``).
``--replicas 2`` then starts a second studio on the same database: the runs
are started on replica A and executed there, half the clients follow them on
A and half on B, where every event arrives through PostgreSQL ``LISTEN/NOTIFY``
(``app/store/postgres/relay.py``). Latency is printed for each half, and the
exactly-once check covers both. The late joiners follow on B.

Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.events import Event  # noqa: E402
from agents.loop import RunRequest, run_agent  # noqa: E402
from agents.providers.base import Completion, ToolCallRequest, ToolSpec  # noqa: E402
from agents.tools import Tool, ToolOutput  # noqa: E402

MODEL = "scripted"
TOOL_NAME = "bench_echo"
TERMINAL = {"run_finished", "run_failed", "run_interrupted"}


# --------------------------------------------------------------------------- the script


ECHO_SPEC = ToolSpec(
    name=TOOL_NAME,
    description="Echo the text back (benchmark tool, in memory).",
    parameters={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
)


def echo(arguments: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
    return ToolOutput(text=f"echo: {arguments.get('text', '')}")


def echo_tool() -> Tool:
    return Tool(spec=ECHO_SPEC, func=echo, settings={}, timeout_s=10.0)


def install_echo_module() -> None:
    """Make ``load_tool("bench_echo")`` work in this process without a file in agents/tools.

    ``load_tool`` imports ``agents.tools.<name>``; an entry in ``sys.modules``
    is found before any file lookup.
    """
    module = types.ModuleType(f"agents.tools.{TOOL_NAME}")
    module.SPEC = ECHO_SPEC  # type: ignore[attr-defined]
    module.run = echo  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module


class ScriptedProvider:
    """Deterministic provider: ``pieces`` text pieces per answer, one tool round.

    The first call (with tools offered and no tool result yet) answers with a
    call to ``bench_echo``; the next one answers in plain text. ``pace`` puts
    ``asyncio.sleep(pace)`` before each piece. If ``gate`` (a file path) is
    set, streaming waits until that file exists.
    """

    name = "scripted"

    def __init__(
        self,
        pieces: int = 200,
        pace: float = 0.0,
        gate: Path | None = None,
        gate_timeout: float = 60.0,
    ) -> None:
        self.models = (MODEL,)
        self.pieces = pieces
        self.pace = pace
        self.gate = gate
        self.gate_timeout = gate_timeout
        self._texts = [f" tok{i}" for i in range(pieces)]

    async def _wait_gate(self) -> None:
        if self.gate is None:
            return
        deadline = time.monotonic() + self.gate_timeout
        while not self.gate.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("benchmark gate never opened")
            await asyncio.sleep(0.005)

    async def stream(self, messages: list[dict[str, Any]], tools: list[ToolSpec], params: Any):
        await self._wait_gate()
        tool_round = bool(tools) and not any(m.get("role") == "tool" for m in messages)
        for text in self._texts:
            if self.pace:
                await asyncio.sleep(self.pace)
            yield text
        calls: tuple[ToolCallRequest, ...] = ()
        if tool_round:
            calls = (ToolCallRequest(id="call_1", name=TOOL_NAME, arguments={"text": "hello"}),)
        yield Completion(
            text="".join(self._texts),
            model=params.model,
            input_tokens=sum(len(str(m.get("content") or "")) // 4 for m in messages),
            output_tokens=self.pieces,
            finish_reason="tool_calls" if calls else "stop",
            tool_calls=calls,
        )


def request(max_rounds: int = 4) -> RunRequest:
    return RunRequest(
        prompt="Echo hello, then answer.",
        model=MODEL,
        temperature=0.0,
        max_tokens=512,
        tools=(TOOL_NAME,),
        max_rounds=max_rounds,
    )


# --------------------------------------------------------------------------- part 1

# Pieces per record_streamed write in the breakdown: about what part 1's unpaced model
# hands the writer at once (a call's 200 pieces in two or three writes).
RECORDER_BATCH = 100


def bench_run(run_id: str, provider: Any, req: Any) -> dict[str, Any]:
    """The runs row a recorded benchmark run starts from."""
    return {
        "id": run_id,
        "model": MODEL,
        "provider": provider.name,
        "prompt": req.prompt,
        "params": req.params(),
        "source": "bench",
        "started_at": time.time(),
    }


class CountingSink:
    def __init__(self) -> None:
        self.count = 0

    async def emit(self, event: Event) -> None:
        self.count += 1


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


async def _overhead(runs: int, warmup: int, pieces: int, tmp: Path) -> dict[str, Any]:
    from app.runs.recorder import Recorder
    from app.store.events import record_event
    from app.store.live import LiveEvent

    class PerEventRecorder(Recorder):
        """The previous recorder: every event awaited alone, one transaction each."""

        async def emit_dict(self, payload: dict) -> None:
            self.seq += 1
            stored, run = await self.store.write(record_event, self.run_id, self.seq, payload)
            self.broker.publish(LiveEvent(self.run_id, self.seq, stored["type"], stored, run))

    from app.store import Store
    from app.store.live import Broker
    from app.store.runs import create_run

    store = Store(tmp / "overhead.db")
    broker = Broker()
    provider = ScriptedProvider(pieces=pieces)
    tools = [echo_tool()]
    req = request()
    counter = 0

    async def bare() -> tuple[float, int]:
        sink = CountingSink()
        t0 = time.perf_counter()
        answer = await run_agent(req, provider, tools, sink)
        elapsed = time.perf_counter() - t0
        assert answer is not None, "bare run failed"
        return elapsed, sink.count

    async def recorded(recorder_class: type = Recorder) -> tuple[float, int]:
        nonlocal counter
        counter += 1
        run_id = f"bench{counter:06d}"
        await store.write(create_run, bench_run(run_id, provider, req))
        recorder = recorder_class(store, broker, run_id)
        t0 = time.perf_counter()
        answer = await run_agent(req, provider, tools, recorder)
        elapsed = time.perf_counter() - t0
        assert answer is not None, "recorded run failed"
        return elapsed, recorder.seq

    try:
        for _ in range(warmup):
            await bare()
            await recorded()
            await recorded(PerEventRecorder)
        bare_times: list[float] = []
        rec_times: list[float] = []
        prev_times: list[float] = []
        events = set()
        # Alternate in small blocks so drift (CPU frequency, page cache) hits both alike.
        block = 5
        done = 0
        while done < runs:
            n = min(block, runs - done)
            for _ in range(n):
                t, c = await bare()
                bare_times.append(t)
                events.add(c)
            for _ in range(n):
                t, c = await recorded()
                rec_times.append(t)
                events.add(c)
            for _ in range(n):
                t, c = await recorded(PerEventRecorder)
                prev_times.append(t)
                events.add(c)
            done += n
        assert len(events) == 1, f"runs emitted different event counts: {events}"
        per_run = events.pop()
        db_bytes = sum(p.stat().st_size for p in tmp.glob("overhead.db*"))
        breakdown = await _breakdown(store, broker, provider, tools, req)
    finally:
        store.close()
    return {
        "runs": runs,
        "events_per_run": per_run,
        "bare": bare_times,
        "recorded": rec_times,
        "previous": prev_times,
        "db_bytes": db_bytes,
        "breakdown": breakdown,
    }


async def _breakdown(store, broker, provider, tools, req) -> dict[str, float]:  # noqa: ANN001
    """Time the parts of one recorded event in isolation (µs per event)."""
    from app.store.events import STREAMED_EVENTS, fold_call, record_event, record_streamed
    from app.store.live import LiveEvent
    from app.store.runs import create_run

    # Collect one run's real events to replay through each part.
    class Keep:
        def __init__(self) -> None:
            self.events: list[Event] = []

        async def emit(self, event: Event) -> None:
            self.events.append(event)

    keep = Keep()
    await run_agent(req, provider, tools, keep)
    evs = keep.events
    reps = 20
    out: dict[str, float] = {}

    t0 = time.perf_counter()
    for _ in range(reps):
        dicts = [e.to_dict() for e in evs]
    out["Event.to_dict (dataclasses.asdict)"] = (time.perf_counter() - t0) / (reps * len(evs)) * 1e6

    def noop(db):  # noqa: ANN001
        return None

    t0 = time.perf_counter()
    for _ in range(reps):
        for _e in evs:
            await store.write(noop)
    out["store.write round trip, awaited alone (one hop, one commit)"] = (
        (time.perf_counter() - t0) / (reps * len(evs)) * 1e6
    )

    t0 = time.perf_counter()
    for _ in range(reps):
        for _e in evs[:-1]:
            store.queue(noop, wait=False)
        await store.write(noop)
    out["store.queue without waiting, amortised (group commit)"] = (
        (time.perf_counter() - t0) / (reps * len(evs)) * 1e6
    )

    # record_event on the writer thread, timed there (no event-loop hand-off).
    def record_all(db, run_ids: list[str], per_event: bool) -> float:  # noqa: ANN001
        t = time.perf_counter()
        for run_id in run_ids:
            if not per_event:
                db.conn.execute("BEGIN IMMEDIATE")
            for seq, d in enumerate(dicts, 1):
                if per_event:
                    db.conn.execute("BEGIN IMMEDIATE")
                record_event(db, run_id, seq, d)
                if per_event:
                    db.conn.execute("COMMIT")
            if not per_event:
                db.conn.execute("COMMIT")
        return time.perf_counter() - t

    # The writes the Recorder makes (pieces handed over RECORDER_BATCH at a time, as an
    # unpaced model's are in part 1; each call folded after its message), one commit a run.
    def record_as_recorder(db, run_ids: list[str], _: bool) -> float:  # noqa: ANN001
        t = time.perf_counter()
        for run_id in run_ids:
            db.conn.execute("BEGIN IMMEDIATE")
            batch: list[tuple[int, dict]] = []
            call: list[tuple[int, dict]] = []
            for seq, d in enumerate(dicts, 1):
                if d["type"] in STREAMED_EVENTS:
                    batch.append((seq, d))
                    call.append((seq, d))
                    if len(batch) == RECORDER_BATCH:
                        record_streamed(db, run_id, batch)
                        batch = []
                    continue
                if batch:
                    record_streamed(db, run_id, batch)
                    batch = []
                record_event(db, run_id, seq, d)
                if d["type"] == "message" and len(call) > 1:
                    fold_call(db, run_id, seq, d.get("content"), call)
                if d["type"] == "message":
                    call = []
            db.conn.execute("COMMIT")
        return time.perf_counter() - t

    for per_event, label, fn in (
        (True, "record_event + commit per event, on the writer thread (previous)", record_all),
        (False, "record_event, one commit per run's events, on the writer thread", record_all),
        (
            False,
            f"the Recorder's writes (pieces {RECORDER_BATCH} a write, folds), one commit per run",
            record_as_recorder,
        ),
    ):
        run_ids = []
        for i in range(reps):
            run_id = f"breakdown{int(per_event)}{fn.__name__}{i:04d}"
            await store.write(create_run, bench_run(run_id, provider, req))
            run_ids.append(run_id)
        elapsed = await store.maintain(fn, run_ids, per_event)
        out[label] = elapsed / (reps * len(evs)) * 1e6

    sub_cm = broker.subscribe("breakdown-sub")
    sub = sub_cm.__enter__()
    try:
        t0 = time.perf_counter()
        for _ in range(reps):
            for seq, d in enumerate(dicts, 1):
                broker.publish(LiveEvent("breakdown-sub", seq, d["type"], d, None))
            while not sub.queue.empty():
                sub.queue.get_nowait()
        out["Broker.publish (1 subscriber)"] = (time.perf_counter() - t0) / (reps * len(evs)) * 1e6
    finally:
        sub_cm.__exit__(None, None, None)
    return out


def report_overhead(res: dict[str, Any]) -> None:
    n = res["events_per_run"]
    bare_us = [t / n * 1e6 for t in res["bare"]]
    rec_us = [t / n * 1e6 for t in res["recorded"]]
    mb, mr = statistics.fmean(bare_us), statistics.fmean(rec_us)
    sb, sr = sum(res["bare"]), sum(res["recorded"])
    print(f"  runs per variant        {res['runs']} (after warm-up), alternating blocks of 5")
    print(f"  events per run          {n}")
    print(
        f"  bare sink               mean {mb:8.1f} µs/event   median {statistics.median(bare_us):8.1f}"
        f"   p95 {pct(bare_us, 95):8.1f}   ({statistics.fmean(res['bare']) * 1e3:.1f} ms/run)"
    )
    print(
        f"  Recorder (SQLite+Broker) mean {mr:7.1f} µs/event   median {statistics.median(rec_us):8.1f}"
        f"   p95 {pct(rec_us, 95):8.1f}   ({statistics.fmean(res['recorded']) * 1e3:.1f} ms/run)"
    )
    prev_us = [t / n * 1e6 for t in res["previous"]]
    mp = statistics.fmean(prev_us)
    print(
        f"  previous (await each)   mean {mp:8.1f} µs/event   median {statistics.median(prev_us):8.1f}"
        f"   p95 {pct(prev_us, 95):8.1f}   ({statistics.fmean(res['previous']) * 1e3:.1f} ms/run)"
    )
    print(
        f"  overhead per event      {mr - mb:8.1f} µs (mean), "
        f"{statistics.median(rec_us) - statistics.median(bare_us):.1f} µs (median)"
    )
    print(
        f"  previous overhead       {mp - mb:8.1f} µs (mean): group commit is"
        f" {(mp - mb) / max(mr - mb, 1e-9):.1f}x cheaper per event"
    )
    print(f"  wall time ratio         {sr / sb:8.2f}x  instrumented/bare ({sr:.2f} s / {sb:.2f} s)")
    print(f"  database after part 1   {res['db_bytes'] / 1e6:.1f} MB (incl. WAL)")
    print("  breakdown of one recorded event, each part timed alone (µs/event):")
    for name, us in res["breakdown"].items():
        print(f"    {us:8.1f}  {name}")


# --------------------------------------------------------------------------- part 2: server


def load() -> str:
    """The load averages (1, 5, 15 minutes)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_app(args: argparse.Namespace, data_dir: Path):  # noqa: ANN201
    """The real app with the scripted provider (and the echo tool) for part 2."""
    from agents.config import AgentConfig
    from app.core.settings import Settings
    from app.main import create_app

    install_echo_module()
    provider = ScriptedProvider(pieces=args.pieces, pace=args.pace, gate=data_dir / "go")
    config = AgentConfig(
        default_model=MODEL,
        max_rounds=4,
        max_tokens=512,
        temperature=0.0,
        local_models=(),
        tools={TOOL_NAME: {"timeout": 10}},
    )
    extra: dict[str, Any] = {}
    if "auth" in Settings.model_fields:
        # API-key auth (being added) would turn the bench's requests away; the
        # server listens on 127.0.0.1 only, which is what --no-auth is for.
        extra["auth"] = False
    settings = Settings(
        data_dir=data_dir,
        agent_config=config,
        max_concurrent_runs=max(8, args.runs),
        database_url=args.database_url,
        **extra,
    )
    return create_app(settings, extra_providers=[provider])


def serve(args: argparse.Namespace) -> None:
    """Child process: the app under uvicorn on 127.0.0.1."""
    import uvicorn

    # OTLP/gRPC on a free port: two replicas, or another studio, would both want 4317.
    os.environ.setdefault("AGENTOP_OTLP_GRPC_PORT", "0")
    app = build_app(args, Path(args.data_dir))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


class ChildServer:
    """``serve`` in a child process, so the clients' work does not share its GIL."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--pieces",
            str(args.pieces),
            "--pace",
            str(args.pace),
            "--runs",
            str(args.runs),
        ]
        if args.database_url:
            self.cmd += ["--database-url", args.database_url]
        self.profile = args.profile_server
        if self.profile:
            self.cmd[1:1] = ["-m", "cProfile", "-o", str(Path(self.profile).resolve())]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ChildServer:
        self.proc = subprocess.Popen(self.cmd, cwd=str(ROOT))
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        # uvicorn shuts down gracefully on either; cProfile only writes its file on SIGINT.
        self.proc.send_signal(signal.SIGINT if self.profile else signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class ThreadServer:
    """``tests.conftest.LiveServer``: uvicorn in a thread of this process (``--inproc``)."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        from tests.conftest import LiveServer

        self.live = LiveServer(build_app(args, data_dir))
        self.url = self.live.url
        # Litestar configures the root logger at start-up; keep httpx's per-request lines out.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    def __enter__(self) -> ThreadServer:
        self.live.__enter__()
        return self

    def alive(self) -> bool:
        return self.live.thread.is_alive()

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)


# --------------------------------------------------------------------------- part 2: clients


class Client:
    def __init__(self, index: int, run_id: str, base: str) -> None:
        self.index = index
        self.run_id = run_id
        self.base = base  # the replica it follows on
        self.seqs: list[int] = []
        self.types: list[str] = []
        self.ats: list[float] = []
        self.received: list[float] = []
        self.connected = asyncio.Event()  # got the run's first event: subscribed
        self.error: str | None = None
        self.done = False


async def follow(http, client: Client, timeout: float) -> None:  # noqa: ANN001
    import httpx

    url = f"{client.base}/api/runs/{client.run_id}/events"
    try:
        async with asyncio.timeout(timeout):
            async with http.stream("GET", url, headers={"accept": "text/event-stream"}) as resp:
                if resp.status_code != 200:
                    client.error = f"HTTP {resp.status_code}"
                    return
                data: list[str] = []
                async for line in resp.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                        continue
                    if line or not data:
                        continue  # id:, event:, comments; or a blank line with no data
                    now = time.time()
                    msg = json.loads("\n".join(data))
                    data = []
                    client.received.append(now)
                    client.seqs.append(msg["seq"])
                    client.types.append(msg["type"])
                    client.ats.append(float(msg["payload"]["at"]))
                    client.connected.set()
                    if msg["type"] in TERMINAL:
                        client.done = True
                        return
    except TimeoutError:
        client.error = f"timed out after {timeout:g}s with {len(client.seqs)} events"
    except httpx.HTTPError as exc:
        client.error = f"{type(exc).__name__}: {exc}"
    finally:
        client.connected.set()


async def _sse(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import httpx

    data_dir = tmp / "sse-data"
    data_dir.mkdir()
    server_cm = ThreadServer(args, data_dir) if args.inproc else ChildServer(args, data_dir)
    with server_cm as server, contextlib.ExitStack() as others:
        base = server.url
        # Replica B: the same database, its own data dir; it executes no run of this
        # benchmark, it only relays A's events to its followers.
        watch = [base]
        for n in range(1, args.replicas):
            other_dir = tmp / f"sse-data-{n}"
            other_dir.mkdir()
            watch.append(others.enter_context(ChildServer(args, other_dir)).url)
        limits = httpx.Limits(max_connections=args.clients + 10, max_keepalive_connections=20)
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as http:
            for url in watch:
                await _wait_healthy(http, url, server)

            body = {"prompt": "Echo hello, then answer.", "model": MODEL, "tools": [TOOL_NAME]}
            run_ids = []
            for _ in range(args.runs):
                resp = await http.post(f"{base}/api/runs/", json=body)
                resp.raise_for_status()
                run_ids.append(resp.json()["run_id"])

            # Client i follows on replica i % replicas: both halves see the same runs.
            clients = [
                Client(i, run_ids[i % len(run_ids)], watch[i % len(watch)])
                for i in range(args.clients)
            ]
            tasks = [asyncio.create_task(follow(http, c, args.timeout)) for c in clients]
            try:
                await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 30)
            except TimeoutError:
                pass  # the failures show in the check below
            gate_at = time.time()
            (data_dir / "go").touch()
            t0 = time.perf_counter()

            # Late joiners connect mid-stream: replay from SQLite, then hand over to live.
            late = [
                Client(args.clients + i, run_ids[(i * 7) % len(run_ids)], watch[-1])
                for i in range(args.late_clients)
            ]

            async def join_late(c: Client, delay: float) -> None:
                await asyncio.sleep(delay)
                await follow(http, c, args.timeout)

            stream_s = 2 * args.pieces * args.pace
            tasks += [
                asyncio.create_task(join_late(c, stream_s * (i + 1) / (len(late) + 1)))
                for i, c in enumerate(late)
            ]
            await asyncio.wait(tasks, timeout=args.timeout + 5)
            wall = time.perf_counter() - t0
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            runs = {}
            for run_id in run_ids:
                runs[run_id] = (await http.get(f"{base}/api/runs/{run_id}")).json()["run"]
    return {
        "clients": clients,
        "late": late,
        "runs": runs,
        "gate_at": gate_at,
        "wall": wall,
        "replicas": watch,
    }


async def _wait_healthy(http, url: str, server: ChildServer | ThreadServer) -> None:  # noqa: ANN001
    import httpx

    deadline = time.monotonic() + 30
    while True:
        if not server.alive():
            raise RuntimeError("server exited")
        try:
            if (await http.get(f"{url}/api/health/")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become healthy in 30 s")
        await asyncio.sleep(0.05)


async def _sse_on_backend(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Part 2 on the chosen backend: on PostgreSQL, a fresh database for the servers."""
    if args.backend == "sqlite":
        return await _sse(args, tmp)
    from bench.pg import drop_database, fresh_database, postgres_server, server_version

    with postgres_server(args.database_url) as server:
        url = fresh_database(server, "sse")
        print(f"  database                {server_version(url)}, a fresh database")
        try:  # the servers get the fresh database, not the server's own
            return await _sse(argparse.Namespace(**{**vars(args), "database_url": url}), tmp)
        finally:
            drop_database(server, url)


def _check(c: Client, run: dict[str, Any]) -> str | None:
    """None if the client got seq 1..last_seq of its run exactly once, in order."""
    expected = list(range(1, int(run["last_seq"]) + 1))
    if c.error:
        return f"client {c.index} (run {c.run_id}): {c.error}"
    if c.seqs != expected:
        dup = len(c.seqs) - len(set(c.seqs))
        missing = sorted(set(expected) - set(c.seqs))
        return (
            f"client {c.index} (run {c.run_id}): {len(c.seqs)} events, expected "
            f"{len(expected)}; {dup} duplicate(s), missing {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, in order: {c.seqs == sorted(c.seqs)}"
        )
    return None


def report_sse(res: dict[str, Any]) -> bool:
    clients: list[Client] = res["clients"]
    late: list[Client] = res["late"]
    runs: dict[str, dict[str, Any]] = res["runs"]
    replicas: list[str] = res["replicas"]
    latencies: list[float] = []
    by_replica: dict[str, list[float]] = {url: [] for url in replicas}
    replayed = 0
    for c in clients:
        for at, got in zip(c.ats, c.received, strict=False):
            if at >= res["gate_at"]:
                latencies.append((got - at) * 1000)
                by_replica[c.base].append((got - at) * 1000)
            else:
                replayed += 1
    problems = [p for c in clients + late if (p := _check(c, runs[c.run_id]))]
    statuses = sorted({r["status"] for r in runs.values()})
    if statuses != ["succeeded"]:
        problems.append(f"run statuses: {statuses}")
    total = sum(len(c.seqs) for c in clients)
    print(
        f"  runs                    {len(runs)}, status {', '.join(statuses)}, "
        f"{statistics.fmean(int(r['last_seq']) for r in runs.values()):.0f} events each"
    )
    print(
        f"  clients                 {len(clients)} ({len(clients) / len(runs):g} per run), "
        "all subscribed before streaming began"
    )
    print(
        f"  events delivered        {total} ({len(latencies)} live, {replayed} replayed from "
        f"the store before streaming began)"
    )
    print(
        f"  streaming wall time     {res['wall']:.2f} s (gate open to last client done), "
        f"{total / res['wall']:.0f} deliveries/s to the {len(clients)} clients"
    )
    if latencies:
        print(
            f"  latency (ms)            p50 {pct(latencies, 50):.2f}   p95 {pct(latencies, 95):.2f}"
            f"   p99 {pct(latencies, 99):.2f}   max {max(latencies):.2f}   "
            f"mean {statistics.fmean(latencies):.2f}   (over the {len(latencies)} live events)"
        )
    if len(replicas) > 1:
        for n, url in enumerate(replicas):
            ms = by_replica[url]
            where = "A, the runs' replica" if n == 0 else f"{chr(65 + n)}, through LISTEN/NOTIFY"
            print(
                f"    on {where:31} p50 {pct(ms, 50):.2f}   p95 {pct(ms, 95):.2f}   "
                f"p99 {pct(ms, 99):.2f}   max {max(ms):.2f}   ({len(ms)} live events)"
            )
    if late:
        print(
            f"  late joiners            {len(late)} more clients connected mid-stream "
            f"({sum(len(c.seqs) for c in late)} events; not in the latency figures)"
        )
    if problems:
        print("  exactly-once check      FAILED")
        for p in problems[:20]:
            print(f"    {p}")
        return False
    print(
        f"  exactly-once check      OK (all {len(clients) + len(late)} clients got seq 1..last_seq "
        "of their run, once each, in order)"
    )
    return True


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--pieces", type=int, default=200, help="token pieces per answer")
    parser.add_argument("--overhead-runs", type=int, default=None, help="runs per variant, part 1")
    parser.add_argument("--runs", type=int, default=20, help="concurrent runs, part 2")
    parser.add_argument("--clients", type=int, default=50, help="SSE clients, part 2")
    parser.add_argument(
        "--late-clients",
        type=int,
        default=10,
        help="part 2: extra clients joining mid-stream (exactly-once check only)",
    )
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between pieces, part 2")
    parser.add_argument("--timeout", type=float, default=90.0, help="per SSE client, part 2")
    parser.add_argument(
        "--inproc",
        action="store_true",
        help="part 2: run uvicorn in a thread of this process (tests.conftest.LiveServer)"
        " instead of a child process",
    )
    parser.add_argument(
        "--profile-server",
        metavar="FILE",
        help="part 2: run the child server under cProfile, write pstats to FILE",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="part 2's store: SQLite in the data dir, or PostgreSQL (bench/pg.py)",
    )
    parser.add_argument(
        "--database-url",
        help="part 2 with --backend postgres: this server (else a throwaway one)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="part 2 on PostgreSQL: studios on the same database; clients split between them",
    )
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-sse", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return 0
    if args.replicas > 1 and (args.backend != "postgres" or args.inproc):
        parser.error("--replicas needs --backend postgres and a child-process server")
    if args.database_url and args.backend != "postgres":
        parser.error("--database-url needs --backend postgres")
    runs = args.overhead_runs or (20 if args.quick else 200)
    warmup = 3 if args.quick else 10

    import sqlite3
    from importlib.metadata import version

    print("AgentOp-Studio recording benchmark")
    print(f"  date                    {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(
        f"  machine                 nproc {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), "
        f"{platform.machine()}, {platform.system()} {platform.release()}"
    )
    print(
        f"  python                  {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLite {sqlite3.sqlite_version}, Litestar {version('litestar')}, uvicorn {version('uvicorn')}, "
        f"httpx {version('httpx')}"
    )
    print(
        f"  settings                {args.pieces} pieces/answer, 1 tool round (2 model calls); "
        f"part 1: {runs} runs/variant + {warmup} warm-up, no pacing; "
        f"part 2: {args.runs} runs, {args.clients} clients (+{args.late_clients} late joiners), "
        f"pace {args.pace * 1000:g} ms/piece"
    )
    # Other work on a 2-core machine moves every figure here: print the load with them.
    print(f"  load average            {load()} (1, 5, 15 min) at the start")
    print(flush=True)

    ok = True
    tmp = Path(tempfile.mkdtemp(prefix="agentop-bench-"))
    try:
        if not args.skip_overhead:
            print("1. Recording overhead per event (run_agent in-process)")
            t0 = time.perf_counter()
            res = asyncio.run(_overhead(runs, warmup, args.pieces, tmp))
            report_overhead(res)
            print(
                f"  (part 1 took {time.perf_counter() - t0:.1f} s; load then {load()})\n",
                flush=True,
            )
        if not args.skip_sse:
            print(
                f"2. SSE delivery latency ({args.runs} concurrent runs, {args.clients} clients, "
                f"server {'in a thread of this process' if args.inproc else 'in a child process'}, "
                f"127.0.0.1, {args.backend}"
                f"{f', {args.replicas} replicas' if args.replicas > 1 else ''})"
            )
            t0 = time.perf_counter()
            res2 = asyncio.run(_sse_on_backend(args, tmp))
            ok = report_sse(res2)
            if args.profile_server and not args.inproc:
                print(f"  server profile written to {args.profile_server}")
            print(
                f"  (part 2 took {time.perf_counter() - t0:.1f} s; load then {load()})", flush=True
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
