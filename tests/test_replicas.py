"""Several replicas on one PostgreSQL: live events, OTLP and run ownership across them.

Two real ``agentop serve`` processes (loopback, ports and data dirs of their
own, one real PostgreSQL database) started at once on an empty database: one
first admin key between them. A local-model run on A streams to a follower on
B exactly once; OTLP sent to B is listed on A; A killed with SIGKILL mid-run
has its run swept to ``interrupted`` by B once A's lease ran out, and B's
follower sees that end live. Then the relay alone (``app.store.postgres.relay``):
a big event travels by reference, a replica ignores its own notifications, and
a dropped listener reconnects and tells followers to resync.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LOCAL_MODEL
from tests.fake_mistral import FakeMistral, Reply
from tests.otlp_requests import export, post, span
from tests.receivers import wait_until

psycopg = pytest.importorskip("psycopg")

AGENTOP = [sys.executable, "-m", "app.cli"]
LEASE_S = 3.0
KEY = re.compile(r"^\s+(ao_\S+)\s*$")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One ``agentop serve`` subprocess; its output is collected line by line."""

    def __init__(
        self, name: str, url: str, data_dir: Path, mistral_url: str, **env_extra: str
    ) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MISTRAL_", "AGENTOP_"))}
        env.update(
            AGENTOP_DATABASE_URL=url,
            AGENTOP_OTLP_GRPC_PORT="0",
            AGENTOP_REPLICA_LEASE_S=str(LEASE_S),
            MISTRAL_API_KEY="k",
            MISTRAL_SERVER_URL=mistral_url,
            **env_extra,
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*AGENTOP, "serve", "--port", str(self.port), "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n" + "\n".join(self.lines[-40:]))
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def printed_keys(self) -> list[str]:
        return [m.group(1) for line in self.lines if (m := KEY.match(line))]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Follower:
    """A client of ``GET /api/runs/{id}/events``: every (id, event) it receives, in order."""

    def __init__(
        self, base: str, key: str, path: str, until: Callable[[str], bool] | None = None
    ) -> None:
        self.until = until  # leave the stream once an event's data passes it
        self.events: list[tuple[str | None, str | None, str]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(base, key, path), daemon=True)
        self.thread.start()
        assert self.ready.wait(15), f"{path} did not open"

    def _read(self, base: str, key: str, path: str) -> None:
        event_id = event = None
        data: list[str] = []
        try:
            timeout = httpx.Timeout(10.0, read=60.0)
            with httpx.stream("GET", base + path, headers={"X-API-Key": key}, timeout=timeout) as r:
                assert r.status_code == 200, r.read()
                self.ready.set()
                for line in r.iter_lines():
                    if line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and (event or data):
                        self.events.append((event_id, event, "\n".join(data)))
                        if self.until is not None and self.until(self.events[-1][2]):
                            return
                        event_id = event = None
                        data = []
        except httpx.HTTPError:
            pass  # the server went away: what was received is what counts
        finally:
            self.ready.set()
            self.done.set()


@pytest.fixture(scope="module")
def replicas(postgres_template: tuple[str, str], tmp_path_factory: pytest.TempPathFactory):
    """Replicas A and B started together on an empty database; the admin key one printed."""
    from tests.postgres_server import create_database

    server_url, _ = postgres_template
    url = create_database(server_url, "replicas")
    mistral = FakeMistral().start()
    root = tmp_path_factory.mktemp("replicas")
    a = Replica("A", url, root / "a", mistral.url)
    b = Replica("B", url, root / "b", mistral.url)
    try:
        wait_until(lambda: a.healthy() and b.healthy(), 90, "both replicas to answer")
        yield a, b, url, mistral
    finally:
        for replica in (a, b):
            replica.stop()
        mistral.stop()


@pytest.fixture(scope="module")
def admin_key(replicas: tuple[Replica, Replica, str, FakeMistral]) -> str:
    a, b, _, _ = replicas
    keys = wait_until(lambda: a.printed_keys() + b.printed_keys(), 10, "the first admin key")
    return str(keys[0])


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def run_status(base: str, key: str, run_id: str) -> str:
    body = httpx.get(f"{base}/api/runs/{run_id}", headers={"X-API-Key": key}, timeout=10).json()
    return str((body.get("run") or body)["status"])


def test_two_replicas_starting_together_make_one_admin_key(replicas, admin_key):
    a, b, url, _ = replicas
    assert len(a.printed_keys() + b.printed_keys()) == 1
    assert query(url, "select count(*) from api_keys")[0][0] == 1
    # One studio secret (CSRF), shared, when the database can hold it.
    if query(url, "select to_regclass('studio_secrets') is not null")[0][0]:
        assert query(url, "select count(*) from studio_secrets")[0][0] == 1


def test_a_run_on_a_streams_exactly_once_to_b(replicas, admin_key):
    a, b, _, _ = replicas
    headers = {"X-API-Key": admin_key}
    # B's live run list opens before the run exists: it can only hear of it through the relay.
    seen: list[str] = []
    listing = Follower(
        b.url, admin_key, "/runs/live", until=lambda data: any(s in data for s in seen)
    )
    r = httpx.post(
        f"{a.url}/api/runs",
        headers=headers,
        json={"prompt": "Name a colour.", "model": LOCAL_MODEL, "max_tokens": 24, "tools": []},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    run_id = r.json()["run_id"]
    seen.append(run_id)
    follower = Follower(b.url, admin_key, f"/api/runs/{run_id}/events")
    assert follower.done.wait(120), "the stream on B did not end"
    seqs = [int(i) for i, _, _ in follower.events if i is not None]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # no gap, no duplicate
    assert len(seqs) > 3 and follower.events[-1][1] == "run_finished", follower.events[-3:]
    assert listing.done.wait(10), "B's live list did not show the run from A"
    assert any(run_id in data for _, _, data in listing.events)


def test_otlp_sent_to_b_is_listed_on_a(replicas, admin_key):
    a, b, _, _ = replicas
    headers = {"X-API-Key": admin_key}
    request = export(span("agent", trace=0xBEEF, span_id=1, gen_ai__operation__name="chat"))
    with httpx.Client(base_url=b.url, headers=headers, timeout=10) as client:
        assert post(client, request, "protobuf").status_code == 200

    def listed() -> bool:
        runs = httpx.get(f"{a.url}/api/runs", headers=headers, timeout=10).json()["runs"]
        return any(r.get("source") == "otlp" for r in runs)

    wait_until(listed, 10, "A to list the ingested run")


def test_a_replica_stopped_mid_run_lets_it_finish_while_b_streams_it(replicas, admin_key, tmp_path):
    """A rolling update: replica C gets SIGTERM mid-run and drains (AGENTOP_DRAIN_S); the
    run ends succeeded, and a browser following it on B sees every event once."""
    _, b, url, mistral = replicas
    c = Replica("C", url, tmp_path / "c", mistral.url, AGENTOP_DRAIN_S="60")
    try:
        wait_until(c.healthy, 60, "replica C to answer")
        mistral.add(Reply(text="drain " * 100, chunk_size=5, delay_s=0.1))  # ~2 s of streaming
        r = httpx.post(
            f"{c.url}/api/runs",
            headers={"X-API-Key": admin_key},
            json={"prompt": "Finish it.", "model": "mistral-small-latest", "tools": []},
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        run_id = r.json()["run_id"]
        follower = Follower(b.url, admin_key, f"/api/runs/{run_id}/events")
        wait_until(lambda: len(follower.events) > 3, 30, "B to follow some events")
        c.proc.send_signal(signal.SIGTERM)
        # uvicorn exits by the signal it stopped on, once shut down.
        assert c.proc.wait(60) in (0, -signal.SIGTERM), "\n".join(c.lines[-30:])
        assert follower.done.wait(20), "B's follower did not see the end"
        assert follower.events[-1][1] == "run_finished", follower.events[-3:]
        seqs = [int(i) for i, _, _ in follower.events if i is not None]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert run_status(b.url, admin_key, run_id) == "succeeded"
        assert any("letting 1 run(s) finish" in line for line in c.lines), c.lines[-20:]
    finally:
        c.stop()


def test_a_killed_mid_run_is_swept_by_b_after_the_lease(replicas, admin_key):
    a, b, url, mistral = replicas
    headers = {"X-API-Key": admin_key}
    mistral.add(Reply(text="slow " * 400, chunk_size=5, delay_s=0.1))  # ~8 s of streaming
    r = httpx.post(
        f"{a.url}/api/runs",
        headers=headers,
        json={"prompt": "Take your time.", "model": "mistral-small-latest", "tools": []},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    run_id = r.json()["run_id"]
    wait_until(lambda: run_status(b.url, admin_key, run_id) == "running", 30, "the run to start")
    follower = Follower(b.url, admin_key, f"/api/runs/{run_id}/events")
    wait_until(lambda: len(follower.events) > 3, 30, "B to follow some events")
    a.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    a.proc.wait(10)
    wait_until(
        lambda: run_status(b.url, admin_key, run_id) == "interrupted",
        LEASE_S * 4 + 10,
        "B to sweep A's run",
    )
    # Not before the lease ran out: A's last heartbeat was at most a beat before the kill.
    assert time.monotonic() - killed >= LEASE_S * 0.5
    assert follower.done.wait(10), "B's follower did not see the end"
    assert follower.events[-1][1] == "run_interrupted"
    seqs = [int(i) for i, _, _ in follower.events if i is not None]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    # A's row is gone with its run; B's stays.
    assert query(url, "select count(*) from processes where kind = 'serve'")[0][0] == 1


# --- the relay alone ----------------------------------------------------------------


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, postgres_template: tuple[str, str]) -> str:
    server_url, template = postgres_template
    name = f"relay_{request.node.name.lower()[:40]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name}")
        conn.execute(f"create database {name} template {template}")
    return f"{server_url.rsplit('/', 1)[0]}/{name}"


class Harness:
    """Two relays (replicas "a" and "b") on one database, each with its broker, one loop."""

    def __init__(self, url: str, fetch: Callable[[str, int, str], Any]) -> None:
        from app.store.live import Broker
        from app.store.postgres.relay import PgRelay

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.brokers = {name: Broker() for name in "ab"}
        self.opened: list[Any] = []
        self.relays = {
            name: PgRelay(url, name, broker, fetch, channel="agentop_test")
            for name, broker in self.brokers.items()
        }
        for name, relay in self.relays.items():
            relay.start(self.loop)
            self.brokers[name].relay = relay.send
            assert relay.listening.wait(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def subscribe(self, name: str, key: str) -> Any:
        """A subscription on replica ``name``'s broker, kept open for the test."""
        opened = self.brokers[name].subscribe(key)
        self.opened.append(opened)  # a context manager collected would unsubscribe
        return self.call(opened.__enter__)

    def drain(self, sub: Any, count: int, timeout: float = 10) -> list[Any]:
        async def take() -> list[Any]:
            return [await asyncio.wait_for(sub.queue.get(), timeout) for _ in range(count)]

        return asyncio.run_coroutine_threadsafe(take(), self.loop).result(timeout + 5)

    def close(self) -> None:
        for relay in self.relays.values():
            relay.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def harness(pg_url: str) -> Iterator[Harness]:
    fetched: list[tuple[str, int, str]] = []

    def fetch(key: str, seq: int, kind: str) -> Any:
        from app.store.live import LiveEvent

        fetched.append((key, seq, kind))
        return LiveEvent(key, seq, kind, {"from": "store"}, None)

    made = Harness(pg_url, fetch)
    made.fetched = fetched  # type: ignore[attr-defined]
    try:
        yield made
    finally:
        made.close()


def test_events_cross_once_and_own_notifications_are_ignored(harness):
    from app.store.live import LiveEvent

    on_a, on_b = harness.subscribe("a", "r1"), harness.subscribe("b", "r1")
    events = [LiveEvent("r1", n, "token", {"text": f"t{n}"}) for n in range(1, 51)]
    harness.call(lambda: [harness.brokers["a"].publish(e) for e in events])
    got_b = harness.drain(on_b, 50)
    assert [(e.seq, e.payload, e.origin) for e in got_b] == [
        (e.seq, e.payload, "a") for e in events
    ]
    got_a = harness.drain(on_a, 50)
    assert all(e.local for e in got_a)
    time.sleep(0.5)  # a's own notifications came back to it by now, and were dropped
    assert on_a.queue.empty() and on_b.queue.empty()


def test_a_big_event_travels_by_reference(harness):
    from app.store.live import LiveEvent
    from app.store.postgres.relay import PAYLOAD_LIMIT, decode, encode

    big = LiveEvent("r2", 7, "message", {"content": "x" * 20_000}, {"id": "r2"})
    small = LiveEvent("r2", 8, "token", {"text": "é" * 10})
    payloads = encode([big, small], "a")
    assert all(len(p.encode()) <= PAYLOAD_LIMIT for p in payloads)
    [(_, _, items)] = [decode(p) for p in payloads]
    assert items[0] == ["r2", 7, "message"] and items[1][3] == {"text": "é" * 10}

    on_b = harness.subscribe("b", "r2")
    harness.call(lambda: (harness.brokers["a"].publish(big), harness.brokers["a"].publish(small)))
    first, second = harness.drain(on_b, 2)
    assert (first.seq, first.payload, first.origin) == (7, {"from": "store"}, "a")
    assert harness.fetched == [("r2", 7, "message")]
    assert second.payload == {"text": "é" * 10}


def test_a_dropped_listener_reconnects_and_followers_resync(harness, pg_url):
    from app.store.live import RESYNC, LiveEvent

    on_b = harness.subscribe("b", "r3")
    relay = harness.relays["b"]
    # The server drops B's listening connection (a failover, a restart, a network cut).
    dropped = query(
        pg_url,
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
        ("agentop relay b listener",),
    )
    assert dropped == [(True,)]
    [nudge] = harness.drain(on_b, 1, timeout=20)  # events sent meanwhile are only in the store
    assert nudge.type == RESYNC and on_b.overflowed
    assert wait_until(relay.listening.is_set, 20, "B to listen again")
    harness.call(lambda: harness.brokers["a"].publish(LiveEvent("r3", 1, "token", {"n": 1})))
    [event] = harness.drain(on_b, 1)
    assert (event.seq, event.origin) == (1, "a")


# --- sweeps ----------------------------------------------------------------------------


def _process(db: Any, process_id: str, heartbeat_at: float) -> None:
    from app.store.processes import SERVE, register_process

    register_process(
        db,
        {
            "id": process_id,
            "pid": 1,
            "host": "h",
            "kind": SERVE,
            "url": None,
            "started_at": heartbeat_at,
            "heartbeat_at": heartbeat_at,
        },
    )


def test_two_replicas_sweeping_at_once_end_a_run_once(pg_url):
    from app.store import Store
    from app.store.events import sweep_orphans
    from app.store.runs import events_after

    now = time.time()
    stores = [Store(Path("/nonexistent/unused.db"), url=pg_url) for _ in range(2)]
    try:

        def setup(db: Any) -> None:
            _process(db, "dead", now - 60)
            _process(db, "live", now)
            for run_id, owner in (("r-dead", "dead"), ("r-live", "live"), ("r-none", None)):
                db.table("runs").insert(
                    {"id": run_id, "status": "running", "started_at": now, "owner": owner}
                )

        stores[0].write_sync(setup)
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def sweep(n: int) -> None:
            barrier.wait()
            results[n] = stores[n].write_sync(sweep_orphans, now, LEASE_S)

        threads = [threading.Thread(target=sweep, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # One of them ended it; the other skipped the locked row, then found it ended.
        assert sorted(len(r) for r in results) == [0, 1]
        [(run_id, seq, stored, run)] = results[0] or results[1]
        assert (run_id, seq, stored["type"], run["status"]) == (
            "r-dead",
            1,
            "run_interrupted",
            "interrupted",
        )
        events = stores[0].read_sync(events_after, "r-dead", 0, 10)
        assert [e["seq"] for e in events] == [1]
        # A live replica's run, and an ingested run (no owner), are not the sweep's.
        rows = query(pg_url, "select id, status from runs order by id")
        assert rows == [("r-dead", "interrupted"), ("r-live", "running"), ("r-none", "running")]
        assert [r[0] for r in query(pg_url, "select id from processes")] == ["live"]
    finally:
        for store in stores:
            store.close()


def test_jobs_are_swept_only_when_their_server_is_gone(pg_url):
    from app.exports.jobs import insert_export, interrupt_exports
    from app.store import Store

    now = time.time()
    store = Store(Path("/nonexistent/unused.db"), url=pg_url)
    try:

        def setup(db: Any) -> None:
            _process(db, "dead", now - 60)
            _process(db, "live", now)
            for owner in ("dead", "live", None):
                insert_export(db, "jsonl", {}, "test", owner)

        store.write_sync(setup)
        # A replica beside others: only what a dead replica left.
        swept = store.write_sync(interrupt_exports, now, LEASE_S, False)
        assert [r["id"] for r in swept] == [1]
        # A replica alone also takes the rows with no owner (older than migration 0016).
        swept = store.write_sync(interrupt_exports, now, LEASE_S, True)
        assert [r["id"] for r in swept] == [3]
        statuses = [r[0] for r in query(pg_url, "select status from exports order by id")]
        assert statuses == ["failed", "queued", "failed"]
    finally:
        store.close()


# --- once per run ----------------------------------------------------------------------


def test_only_the_replica_that_recorded_a_run_reacts_to_its_end():
    """Alerts and W&B metrics follow local run ends; another replica's, relayed, are for pages."""
    from app.runs.watch import RunWatcher
    from app.store.live import Broker, LiveEvent

    async def scenario() -> tuple[list[str], list[str]]:
        broker = Broker()
        reacted: list[str] = []

        async def react(run_id: str) -> None:
            reacted.append(run_id)

        watcher = RunWatcher(None, broker, [react])  # type: ignore[arg-type]  # no catch-up here
        watcher.start()
        await asyncio.sleep(0)
        seen: list[str] = []
        with broker.subscribe("*") as page:  # a page follows both
            broker.publish(LiveEvent("theirs", 5, "run_finished", {}, None, origin="other"))
            broker.publish(LiveEvent("ours", 5, "run_finished", {}, None))
            broker.resync()  # a relay reconnect: pages resync, the watcher is not concerned
            while not page.queue.empty():
                seen.append(page.queue.get_nowait().run_id)
            await watcher.drained()
        await watcher.stop()
        return reacted, seen

    reacted, seen = asyncio.run(scenario())
    assert reacted == ["ours"]
    assert seen == ["theirs", "ours", "*"]


def test_replicas_share_the_csrf_secret(pg_url, tmp_path):
    """A form served by one replica is accepted by another: one secret, in the database."""
    from app.auth.secret import csrf_secret
    from app.core.settings import Settings

    first, second = (
        csrf_secret(Settings(data_dir=tmp_path / name, database_url=pg_url)) for name in "ab"
    )
    assert first == second and len(first) > 40
    assert not (tmp_path / "a" / "secret.key").exists()  # nothing per replica on disk
    assert query(pg_url, "select count(*) from studio_secrets") == [(1,)]


def test_a_studio_moved_from_sqlite_keeps_its_csrf_secret(pg_url, tmp_path):
    """After copy-db the data dir still holds SQLite's secret.key: PostgreSQL adopts it."""
    from app.auth.secret import csrf_secret
    from app.core.settings import Settings

    on_sqlite = Settings(data_dir=tmp_path / "studio").secret()
    on_postgres = Settings(data_dir=tmp_path / "studio", database_url=pg_url)
    other_replica = Settings(data_dir=tmp_path / "other", database_url=pg_url)
    assert csrf_secret(on_postgres) == on_sqlite
    assert csrf_secret(other_replica) == on_sqlite
