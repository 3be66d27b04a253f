"""Live run events: SSE over real HTTP (resume, late readers) and the broker underneath.

The HTTP tests run the real app under uvicorn (``live_server``) and read
``GET /api/runs/{id}/events`` with httpx, streaming. Every read is bounded by
an httpx timeout and an overall deadline so a bug cannot hang the suite.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import app.store.live as live
from agents.events import LLMCallFinished, MessageAdded, RunFinished, RunStarted, TokenDelta
from app.runs.recorder import Recorder
from app.store.live import Broker, LiveEvent, follow_run
from app.store.runs import create_run, events_after
from app.store.statuses import TERMINAL
from tests.conftest import MISTRAL_MODEL
from tests.fake_mistral import Reply
from tests.receivers import wait_until

pytestmark = pytest.mark.both_backends

TIMEOUT = httpx.Timeout(5.0)


def KEY_HEADERS(live_server) -> dict[str, str]:  # noqa: N802 - reads like a constant
    return {"X-API-Key": live_server.admin_key}  # connect, read (per chunk), write and pool


STREAM_DEADLINE_S = 20.0
SLOW_TEXT = "The quick brown fox jumps over a lazy dog"  # 41 characters


# --- SSE client helpers -----------------------------------------------------------------


@dataclass
class SSE:
    id: str | None
    event: str | None
    data: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.data)


def iter_sse(response: httpx.Response) -> Iterator[SSE]:
    """Parse a text/event-stream body (comments are skipped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    deadline = time.monotonic() + STREAM_DEADLINE_S
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise AssertionError("SSE stream did not end in time")
        if line == "":
            if data or fields:
                yield SSE(fields.get("id"), fields.get("event"), "\n".join(data))
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    if data or fields:
        yield SSE(fields.get("id"), fields.get("event"), "\n".join(data))


def read_stream(
    client: httpx.Client,
    run_id: str,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> tuple[list[SSE], bool]:
    """Read events; return them and whether the server ended the stream itself."""
    events: list[SSE] = []
    with client.stream(
        "GET", f"/api/runs/{run_id}/events", headers=headers or {}, params=params
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in iter_sse(response):
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                return events, False  # leaving the block disconnects
    return events, True


def start_run(client: httpx.Client, prompt: str = "tell me about foxes") -> str:
    r = client.post("/api/runs", json={"prompt": prompt, "model": MISTRAL_MODEL, "tools": []})
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def wait_finished(client: httpx.Client, run_id: str, timeout: float = 20.0) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()["run"]
        return run if run["status"] in TERMINAL else None

    return wait_until(ended, timeout, f"run {run_id} to finish")


def check_well_formed(events: list[SSE]) -> list[int]:
    """Each event's id is its seq and its name its type; return the seqs."""
    seqs = []
    for e in events:
        body = e.json
        assert e.id == str(body["seq"])
        assert e.event == body["type"] == body["payload"]["type"]
        seqs.append(body["seq"])
    return seqs


def key(events: list[SSE]) -> list[tuple[int, str, Any]]:
    return [(e.json["seq"], e.json["type"], e.json["payload"]) for e in events]


@pytest.fixture
def http(live_server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=live_server.url, timeout=TIMEOUT, headers=KEY_HEADERS(live_server)
    ) as client:
        yield client


# --- SSE over real HTTP -----------------------------------------------------------------


def test_disconnect_and_resume_with_last_event_id(http, fake_mistral):
    fake_mistral.add(Reply(text=SLOW_TEXT, chunk_size=2, delay_s=0.05))
    run_id = start_run(http)

    first, ended = read_stream(http, run_id, stop_after=5)
    assert not ended
    assert "run_finished" not in [e.event for e in first], "run ended before the disconnect"
    last_id = first[-1].id
    assert last_id is not None

    second, ended = read_stream(http, run_id, headers={"Last-Event-ID": last_id})
    assert ended, "the stream should close after the terminal event"
    assert second, "nothing after reconnecting"
    assert second[-1].event == "run_finished"

    seqs = check_well_formed(first) + check_well_formed(second)
    assert seqs == list(range(1, seqs[-1] + 1))  # each seq once, in order, no gap
    assert int(second[0].id) == int(last_id) + 1
    tokens = [e.json["payload"]["text"] for e in first + second if e.event == "token"]
    assert len(tokens) >= 10  # it really streamed
    assert "".join(tokens) == SLOW_TEXT
    assert second[-1].json["payload"]["response"] == SLOW_TEXT
    assert second[-1].json["run"]["status"] == "succeeded"

    wait_finished(http, run_id)
    fresh, ended = read_stream(http, run_id)
    assert ended
    assert key(fresh) == key(first + second)


def test_reader_after_the_run_ended_gets_the_whole_log(http, fake_mistral):
    fake_mistral.add(Reply(text="Short answer.", usage=(12, 3)))
    run_id = start_run(http)
    run = wait_finished(http, run_id)
    assert run["status"] == "succeeded"

    started = time.monotonic()
    events, ended = read_stream(http, run_id)
    assert ended and time.monotonic() - started < 3  # closes by itself, no keep-alive wait
    seqs = check_well_formed(events)
    assert seqs == list(range(1, run["last_seq"] + 1))
    assert events[0].event == "run_started"
    assert events[-1].event == "run_finished"
    assert [e.json["payload"]["role"] for e in events if e.event == "message"] == [
        "user",
        "assistant",
    ]
    llm = next(e.json for e in events if e.event == "llm_call_finished")
    assert llm["payload"]["cost_status"] == "priced"
    assert llm["payload"]["input_tokens"] == 12
    assert events[-1].json["run"]["status"] == "succeeded"


def test_after_query_works_like_the_header(http, fake_mistral):
    fake_mistral.add(Reply(text="one two three four", chunk_size=3))
    run_id = start_run(http)
    run = wait_finished(http, run_id)
    n = 3
    by_query, ended_q = read_stream(http, run_id, params={"after": n})
    by_header, ended_h = read_stream(http, run_id, headers={"Last-Event-ID": str(n)})
    assert ended_q and ended_h
    assert check_well_formed(by_query) == list(range(n + 1, run["last_seq"] + 1))
    assert key(by_query) == key(by_header)
    # Resuming from 0 is the whole log; junk in the header is ignored.
    everything, _ = read_stream(http, run_id, headers={"Last-Event-ID": "not-a-number"})
    assert check_well_formed(everything) == list(range(1, run["last_seq"] + 1))


def test_negative_after_is_rejected(http, fake_mistral):
    run_id = start_run(http)
    wait_finished(http, run_id)
    assert http.get(f"/api/runs/{run_id}/events", params={"after": -1}).status_code == 400


def test_resume_after_the_terminal_event_closes_the_stream(live_server, fake_mistral):
    with httpx.Client(
        base_url=live_server.url, timeout=TIMEOUT, headers=KEY_HEADERS(live_server)
    ) as setup:
        run_id = start_run(setup)
        run = wait_finished(setup, run_id)
    # An EventSource reconnects with the id of the last event it saw, here the
    # terminal one: the server should answer with an empty stream that ends.
    with httpx.Client(
        base_url=live_server.url,
        timeout=httpx.Timeout(5.0, read=2.0),
        headers=KEY_HEADERS(live_server),
    ) as client:
        try:
            events, ended = read_stream(
                client, run_id, headers={"Last-Event-ID": str(run["last_seq"])}
            )
        except httpx.ReadTimeout:
            pytest.fail("the stream stayed open after the run had ended")
    assert ended and events == []


def test_unknown_run_is_404(http):
    r = http.get("/api/runs/does-not-exist/events")
    assert r.status_code == 404
    assert "does-not-exist" in r.json()["detail"]
    with http.stream("GET", "/api/runs/nope/events", headers={"Last-Event-ID": "3"}) as r:
        assert r.status_code == 404


# --- Broker and follow_run ----------------------------------------------------------------

T0 = 1_700_000_000.0


def run_async(coro, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, timeout))


def started(at: float = T0) -> RunStarted:
    return RunStarted(model="m", provider="local", params={}, at=at)


def token(i: int) -> TokenDelta:
    return TokenDelta(text=f"t{i} ", at=T0 + i)


class HookedStore:
    """A Store whose first catch-up read runs hooks before and after the SQLite read."""

    def __init__(self, store, before, after) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.before = before
        self.after = after
        self.hooked = False

    async def write(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        return await self.store.write(fn, *args, **kwargs)

    async def read(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fn is events_after and not self.hooked:
            self.hooked = True
            await self.before()
            rows = await self.store.read(fn, *args, **kwargs)
            await self.after()
            return rows
        return await self.store.read(fn, *args, **kwargs)


async def collect(agen, limit: int = 10_000) -> list[LiveEvent]:  # type: ignore[no-untyped-def]
    out = []
    async for event in agen:
        if event is not None:
            out.append(event)
        if len(out) > limit:
            raise AssertionError("too many events")
    return out


def test_events_published_during_catch_up_are_neither_lost_nor_duplicated(db):
    db.write_sync(create_run, {"id": "r", "started_at": T0})

    async def main() -> tuple[list[LiveEvent], int]:
        broker = Broker()
        recorder = Recorder(db, broker, "r")
        await recorder.emit(started())
        await recorder.emit(token(2))

        async def before() -> None:
            # Committed and published before the read: in SQLite *and* the queue.
            await recorder.emit(token(3))
            await recorder.emit(token(4))

        async def after() -> None:
            # Published after the read: only in the queue.
            await recorder.emit(token(5))
            await recorder.emit(RunFinished(response="done", at=T0 + 6))

        hooked = HookedStore(db, before, after)
        events = await collect(follow_run(hooked, broker, "r", keepalive_s=1.0))
        assert hooked.hooked
        return events, broker.subscriber_count("r")

    events, subscribers = run_async(main())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.type for e in events] == ["run_started"] + ["token"] * 4 + ["run_finished"]
    assert [e.payload["text"] for e in events[1:5]] == ["t2 ", "t3 ", "t4 ", "t5 "]
    assert subscribers == 0  # unsubscribed when the stream ended


def test_concurrent_writer_and_many_followers(db):
    """Followers joining at random moments each see every later event exactly once."""
    db.write_sync(create_run, {"id": "r", "started_at": T0})
    total = 120

    async def main() -> dict[tuple[int, int], list[int]]:
        broker = Broker()
        recorder = Recorder(db, broker, "r")

        async def produce() -> None:
            await recorder.emit(started())
            for i in range(2, total):
                await recorder.emit(token(i))
                if i % 7 == 0:
                    await asyncio.sleep(0.002)
            await recorder.emit(RunFinished(response="done", at=T0 + total))

        async def follow(delay: float, after: int) -> list[int]:
            await asyncio.sleep(delay)
            return [e.seq for e in await collect(follow_run(db, broker, "r", after, 1.0))]

        specs = [(0.0, 0), (0.005, 0), (0.01, 3), (0.02, 0), (0.03, 10), (0.05, 0)]
        results = await asyncio.gather(produce(), *(follow(d, a) for d, a in specs))
        late = [e.seq for e in await collect(follow_run(db, broker, "r", 0, 1.0))]
        assert broker.subscriber_count("r") == 0
        out = dict(zip(specs, results[1:], strict=False))
        out[(-1, 0)] = late
        return out

    for (delay, after), seqs in run_async(main(), 30).items():
        assert seqs == list(range(after + 1, total + 1)), (delay, after)


def test_overflowed_subscriber_catches_up_from_sqlite(db, monkeypatch):
    db.write_sync(create_run, {"id": "r", "started_at": T0})
    subs: list[live.Subscription] = []
    overflowed: list[bool] = []

    original = live.Subscription

    def small_subscription(run_id: str, **kwargs: Any) -> live.Subscription:
        sub = original(run_id, asyncio.Queue(maxsize=4), **kwargs)
        subs.append(sub)
        return sub

    monkeypatch.setattr(live, "Subscription", small_subscription)

    async def main() -> list[LiveEvent]:
        broker = Broker()
        recorder = Recorder(db, broker, "r")
        await recorder.emit(started())
        agen = follow_run(db, broker, "r", 0, keepalive_s=1.0)
        first = await agen.__anext__()  # subscribed; catch-up has returned seq 1
        assert first.seq == 1
        # A burst far larger than the queue while the follower is not reading.
        for i in range(2, 30):
            await recorder.emit(token(i))
        await recorder.emit(
            LLMCallFinished(
                model="m",
                provider="local",
                input_tokens=1,
                output_tokens=1,
                latency_ms=1,
                at=T0 + 30,
            )
        )
        await recorder.emit(MessageAdded(role="assistant", content="x", at=T0 + 31))
        await recorder.emit(RunFinished(response="x", at=T0 + 32))
        overflowed.append(subs[0].overflowed)
        rest = await collect(agen)
        return [first, *rest]

    events = run_async(main())
    assert overflowed == [True]
    assert [e.seq for e in events] == list(range(1, 33))
    assert events[-1].type == "run_finished"
    assert events[-1].run is not None and events[-1].run["status"] == "succeeded"
    assert subs[0].overflowed is False


def test_follow_run_yields_keepalives_while_idle_and_stops_at_the_end(db):
    db.write_sync(create_run, {"id": "r", "started_at": T0})

    async def main() -> list[LiveEvent | None]:
        broker = Broker()
        recorder = Recorder(db, broker, "r")
        await recorder.emit(started())
        seen: list[LiveEvent | None] = []
        async for event in follow_run(db, broker, "r", 0, keepalive_s=0.02):
            seen.append(event)
            if event is None and len([e for e in seen if e is None]) == 2:
                await recorder.emit(RunFinished(response="ok", at=T0 + 1))
        return seen

    seen = run_async(main(), 5)
    assert seen[0] is not None and seen[0].seq == 1
    assert seen[-1] is not None and seen[-1].type == "run_finished" and seen[-1].seq == 2
    assert seen.count(None) == 2


def test_broker_routes_by_run_and_wildcard():
    async def main() -> None:
        broker = Broker()
        with broker.subscribe("a") as a, broker.subscribe("*") as everything:
            assert broker.subscriber_count("a") == 1
            broker.publish(LiveEvent("a", 1, "token", {"text": "x"}))
            broker.publish(LiveEvent("b", 1, "token", {"text": "y"}))
            assert a.queue.qsize() == 1 and a.queue.get_nowait().run_id == "a"
            assert [everything.queue.get_nowait().run_id for _ in range(2)] == ["a", "b"]
        assert broker.subscriber_count("a") == 0 and broker.subscriber_count("*") == 0
        broker.publish(LiveEvent("a", 2, "token", {}))  # no subscribers: a no-op

    run_async(main())


def test_abandoned_follower_unsubscribes(db):
    db.write_sync(create_run, {"id": "r", "started_at": T0})

    async def main() -> int:
        broker = Broker()
        recorder = Recorder(db, broker, "r")
        await recorder.emit(started())
        agen = follow_run(db, broker, "r", 0, keepalive_s=1.0)
        await agen.__anext__()
        assert broker.subscriber_count("r") == 1
        await agen.aclose()  # what a client disconnect does
        return broker.subscriber_count("r")

    assert run_async(main()) == 0
