"""The SQLite store: migrations, WAL, the event projection, crash recovery and queries."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest

from agents.events import (
    Event,
    LLMCallFinished,
    MessageAdded,
    RunFailed,
    RunFinished,
    RunStarted,
    TokenDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from app.store import Store
from app.store.backend import INTEGRITY_ERRORS
from app.store.events import fold_call, record_event, sweep_orphans
from app.store.migrations import MIGRATIONS, apply_migrations
from app.store.runs import (
    count_runs,
    create_run,
    draft_text,
    events_after,
    get_run,
    list_runs,
    run_detail,
    totals,
)
from tests.prices import mistral_rates

pytestmark = pytest.mark.both_backends

T0 = 1_700_000_000.0


def make_run(store: Store, run_id: str, started_at: float = T0, **extra: Any) -> dict[str, Any]:
    row = {
        "id": run_id,
        "model": "mistral-small-latest",
        "provider": "mistral",
        "prompt": "hello",
        "params": {"temperature": 0.0},
        "started_at": started_at,
        **extra,
    }
    return store.write_sync(create_run, row)


class Feed:
    """Records events for one run the way the Recorder does, synchronously."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.seq = 0

    def __call__(self, event: Event | dict[str, Any]):
        payload = event.to_dict() if isinstance(event, Event) else event
        self.seq += 1
        result = self.store.write_sync(record_event, self.run_id, self.seq, payload)
        if payload["type"] == "message":
            # The recorder then folds the call's pieces (as a deferrable write of its own).
            self.store.write_sync(fold_call, self.run_id, self.seq, payload.get("content"))
        return result


def q(store: Store, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    return store.read_sync(lambda db: [dict(r) for r in db.query(sql, params or [])])


# --- migrations and connection settings ---------------------------------------


def test_migrations_apply_once_and_are_recorded(tmp_path):
    path = tmp_path / "m.db"
    names = [name for name, _ in MIGRATIONS]
    assert names and len(set(names)) == len(names)
    first = Store(path)
    try:
        assert first.migrations_applied == names
        recorded = q(first, "select name, applied_at from _migrations")
        assert sorted(r["name"] for r in recorded) == sorted(names)
        assert all(r["applied_at"] > 0 for r in recorded)
        tables = {r["name"] for r in q(first, "select name from sqlite_master where type='table'")}
        assert {"runs", "events", "messages", "tool_calls", "spans"} <= tables
    finally:
        first.close()

    second = Store(path)
    try:
        assert second.migrations_applied == []
        assert len(q(second, "select * from _migrations")) == len(names)
        # Applying again on a live connection is a no-op too.
        assert second.write_sync(lambda db: apply_migrations(db)) == []
    finally:
        second.close()


def test_second_store_on_the_same_open_file_applies_nothing(db):
    other = Store(db.path, url=db.url)
    try:
        assert other.migrations_applied == []
    finally:
        other.close()


@pytest.mark.sqlite_only
def test_wal_mode_and_pragmas(db):
    assert db.read_sync(lambda d: d.execute("pragma journal_mode").fetchone()[0]) == "wal"
    assert db.write_sync(lambda d: d.execute("pragma journal_mode").fetchone()[0]) == "wal"
    assert db.read_sync(lambda d: d.execute("pragma foreign_keys").fetchone()[0]) == 1
    # WAL is a property of the file: a plain connection sees it too.
    conn = sqlite3.connect(db.path)
    try:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_async_write_and_read_from_many_tasks(db):
    async def main() -> list[str]:
        await asyncio.gather(
            *(db.write(create_run, {"id": f"r{i:02d}", "started_at": T0 + i}) for i in range(20))
        )
        return [r["id"] for r in await db.read(list_runs, 100)]

    ids = asyncio.run(asyncio.wait_for(main(), 10))
    assert ids == [f"r{i:02d}" for i in reversed(range(20))]


def test_a_failing_write_rolls_back_everything(db):
    make_run(db, "r1")
    feed = Feed(db, "r1")
    feed(RunStarted(model="m", provider="local", params={}, at=T0 + 1))
    # tool_call_finished without latency_ms fails in the projection, after the
    # event row was inserted: the whole step must roll back.
    with pytest.raises(KeyError):
        db.write_sync(
            record_event, "r1", 2, {"type": "tool_call_finished", "at": T0 + 2, "call_id": "x"}
        )
    assert [e["seq"] for e in db.read_sync(events_after, "r1", 0)] == [1]
    assert db.read_sync(get_run, "r1")["last_seq"] == 1
    # The same seq can be written afterwards.
    message = MessageAdded(role="user", content="hi", at=T0 + 2).to_dict()
    db.write_sync(record_event, "r1", 2, message)
    assert [e["seq"] for e in db.read_sync(events_after, "r1", 0)] == [1, 2]


def test_duplicate_seq_is_rejected(db):
    make_run(db, "r1")
    feed = Feed(db, "r1")
    feed(RunStarted(model="m", provider="local", params={}, at=T0))
    with pytest.raises(INTEGRITY_ERRORS):
        db.write_sync(record_event, "r1", 1, MessageAdded(role="user", content="x").to_dict())


# --- record_event projections ---------------------------------------------------


def test_full_run_projection(db):
    make_run(db, "run1", started_at=T0)
    feed = Feed(db, "run1")

    stored, run = feed(
        RunStarted(
            model="mistral-small-latest",
            provider="mistral",
            params={"temperature": 0.2},
            at=T0 + 0.1,
        )
    )
    assert stored["type"] == "run_started"
    assert run["status"] == "running" and run["params"] == {"temperature": 0.2}

    _, run = feed(MessageAdded(role="system", content="be brief", at=T0 + 0.2))
    assert run is None  # messages don't change totals
    feed(MessageAdded(role="user", content="what time is it?", at=T0 + 0.3))
    feed(TokenDelta(text="Let me ", at=T0 + 0.4))
    feed(TokenDelta(text="check.", at=T0 + 0.5))
    assert db.read_sync(draft_text, "run1") == "Let me check."

    stored, run = feed(
        LLMCallFinished(
            model="mistral-small-latest",
            provider="mistral",
            input_tokens=1000,
            output_tokens=200,
            latency_ms=400.0,
            round=0,
            finish_reason="tool_calls",
            at=T0 + 0.6,
        )
    )
    usd_in, usd_out = mistral_rates(db, "mistral-small", T0)  # USD per million tokens
    first_cost = 1000 / 1e6 * usd_in + 200 / 1e6 * usd_out
    assert stored["cost_usd"] == pytest.approx(first_cost) and stored["cost_status"] == "priced"
    assert run["input_tokens"] == 1000 and run["output_tokens"] == 200
    assert run["cost_usd"] == pytest.approx(first_cost) and run["cost_status"] == "priced"

    calls = (
        {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "boom", "arguments": "{}"}},
    )
    feed(MessageAdded(role="assistant", content="Let me check.", tool_calls=calls, at=T0 + 0.7))
    assert db.read_sync(draft_text, "run1") == ""

    _, run = feed(ToolCallStarted(call_id="c1", name="clock", arguments={"tz": "UTC"}, at=T0 + 0.8))
    assert run is None
    [c1] = q(db, "select * from tool_calls where run_id = 'run1'")
    assert c1["status"] == "running" and c1["name"] == "clock" and c1["ended_at"] is None

    _, run = feed(
        ToolCallFinished(
            call_id="c1",
            name="clock",
            arguments={"tz": "UTC"},
            result="12:00",
            error=None,
            latency_ms=100.0,
            cost_lines=({"item": "api", "usd": 0.01},),
            at=T0 + 0.9,
        )
    )
    assert run["tool_calls"] == 1 and run["tool_errors"] == 0
    feed(ToolCallStarted(call_id="c2", name="boom", arguments={}, at=T0 + 1.0))
    _, run = feed(
        ToolCallFinished(
            call_id="c2",
            name="boom",
            arguments={},
            result=None,
            error="RuntimeError: boom",
            latency_ms=50.0,
            at=T0 + 1.05,
        )
    )
    assert run["tool_calls"] == 2 and run["tool_errors"] == 1
    feed(MessageAdded(role="tool", content="12:00", tool_call_id="c1", name="clock", at=T0 + 1.1))
    feed(
        MessageAdded(
            role="tool",
            content="ERROR: RuntimeError: boom",
            tool_call_id="c2",
            name="boom",
            at=T0 + 1.1,
        )
    )

    # Second model call on a model without a price: the run becomes partial.
    feed(TokenDelta(text="It is ", round=1, at=T0 + 1.2))
    feed(TokenDelta(text="noon.", round=1, at=T0 + 1.3))
    assert db.read_sync(draft_text, "run1") == "It is noon."
    stored, run = feed(
        LLMCallFinished(
            model="mystery-model-9000",
            provider="mistral",
            input_tokens=50,
            output_tokens=5,
            latency_ms=200.0,
            round=1,
            finish_reason="stop",
            at=T0 + 1.4,
        )
    )
    assert stored["cost_usd"] is None and stored["cost_status"] == "unpriced"
    assert run["input_tokens"] == 1050 and run["output_tokens"] == 205
    assert run["cost_usd"] == pytest.approx(first_cost)  # unknown cost adds nothing
    assert run["cost_status"] == "partial"
    feed(MessageAdded(role="assistant", content="It is noon.", at=T0 + 1.5))
    stored, run = feed(RunFinished(response="It is noon.", at=T0 + 2.0))

    assert run["status"] == "succeeded"
    assert run["response"] == "It is noon."
    assert run["error"] is None
    assert run["ended_at"] == pytest.approx(T0 + 2.0)
    assert run["latency_ms"] == pytest.approx(2000.0)
    assert run["last_seq"] == feed.seq == 18

    detail = db.read_sync(run_detail, "run1")
    assert [m["role"] for m in detail["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assistant = detail["messages"][2]
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    tool_message = detail["messages"][3]
    assert tool_message["tool_call_id"] == "c1" and tool_message["name"] == "clock"
    assert detail["messages"][0]["tool_calls"] == []

    c1, c2 = detail["tool_calls"]
    assert (c1["call_id"], c1["status"], c1["result"], c1["error"]) == ("c1", "ok", "12:00", None)
    assert c1["arguments"] == {"tz": "UTC"} and c1["latency_ms"] == 100.0
    assert c1["cost_lines"] == [{"item": "api", "usd": 0.01}]
    assert c1["ended_at"] == pytest.approx(T0 + 0.9)
    assert (c2["call_id"], c2["status"], c2["error"]) == ("c2", "error", "RuntimeError: boom")

    # The same span shape as an ingested trace: OpenTelemetry GenAI names and ids.
    spans = {s["span_id"]: s for s in detail["spans"]}
    assert all(len(s["span_id"]) == 16 and len(s["trace_id"]) == 32 for s in spans.values())
    assert len({s["trace_id"] for s in spans.values()}) == 1
    [agent] = [s for s in detail["spans"] if s["kind"] == "agent"]
    assert agent["parent_span_id"] is None and agent["name"] == "invoke_agent agentop"
    assert agent["span_kind"] == "internal"
    assert agent["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert agent["resource"] == {"service.name": "agentop-studio"}
    assert agent["scope"]["name"] == "agentop"
    assert agent["start_at"] == pytest.approx(T0 + 0.1) and agent["end_at"] == pytest.approx(T0 + 2)
    assert agent["status"] == "ok"
    llm_spans = [s for s in detail["spans"] if s["kind"] == "llm"]
    assert [s["name"] for s in llm_spans] == [
        "chat mistral-small-latest",
        "chat mystery-model-9000",
    ]
    assert all(s["parent_span_id"] == agent["span_id"] for s in llm_spans)
    assert llm_spans[0]["span_kind"] == "client"
    assert llm_spans[0]["start_at"] == pytest.approx(T0 + 0.2)  # end - latency
    assert llm_spans[0]["end_at"] == pytest.approx(T0 + 0.6)
    assert llm_spans[0]["input_tokens"] == 1000 and llm_spans[0]["output_tokens"] == 200
    assert llm_spans[0]["attributes"]["gen_ai.usage.input_tokens"] == 1000
    assert llm_spans[0]["attributes"]["gen_ai.provider.name"] == "mistral_ai"
    assert llm_spans[0]["cost_usd"] == pytest.approx(first_cost)
    assert llm_spans[1]["cost_usd"] is None
    assert llm_spans[1]["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert llm_spans[1]["attributes"]["agentop.round"] == 1
    tools = {
        s["attributes"]["gen_ai.tool.call.id"]: s for s in spans.values() if s["kind"] == "tool"
    }
    assert tools["c1"]["name"] == "execute_tool clock" and tools["c1"]["status"] == "ok"
    assert tools["c1"]["start_at"] == pytest.approx(T0 + 0.8)
    assert tools["c1"]["attributes"]["gen_ai.tool.call.arguments"] == '{"tz": "UTC"}'
    assert tools["c2"]["status"] == "error"
    assert tools["c2"]["status_message"] == "RuntimeError: boom"
    assert detail["spans"][0]["span_id"] == agent["span_id"]  # ordered by start time

    events = db.read_sync(events_after, "run1", 0)
    assert [e["seq"] for e in events] == list(range(1, 19))
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
    assert events[5]["payload"]["cost_status"] == "priced"  # stored with its cost


def test_local_run_is_free(db):
    make_run(db, "loc", provider="local", model="smollm2-135m")
    feed = Feed(db, "loc")
    feed(RunStarted(model="smollm2-135m", provider="local", params={}, at=T0))
    for i in range(2):
        _, run = feed(
            LLMCallFinished(
                model="smollm2-135m",
                provider="local",
                input_tokens=10,
                output_tokens=3,
                latency_ms=1.0,
                at=T0 + i,
            )
        )
    assert run["cost_status"] == "free" and run["cost_usd"] == 0.0
    assert run["input_tokens"] == 20 and run["output_tokens"] == 6


def test_run_before_any_model_call_has_no_cost_status(db):
    run = make_run(db, "r")
    assert run["status"] == "queued"
    assert run["cost_status"] is None and run["cost_usd"] == 0.0
    assert run["input_tokens"] == 0 and run["tool_calls"] == 0 and run["last_seq"] == 0


def test_run_failed_projection(db):
    make_run(db, "bad", started_at=T0)
    feed = Feed(db, "bad")
    feed(RunStarted(model="m", provider="mistral", params={}, at=T0 + 0.5))
    _, run = feed(RunFailed(error="HTTPError: 500", at=T0 + 1.5))
    assert run["status"] == "failed"
    assert run["error"] == "HTTPError: 500"
    assert run["response"] is None
    assert run["latency_ms"] == pytest.approx(1500.0)
    [agent] = q(db, "select * from spans where run_id = 'bad'")
    assert agent["status"] == "error" and agent["end_at"] == pytest.approx(T0 + 1.5)
    assert agent["status_message"] == "HTTPError: 500"


# --- crash recovery ---------------------------------------------------------------


def test_sweep_orphans(db):
    make_run(db, "queued", started_at=T0)
    make_run(db, "running", started_at=T0 + 1)
    make_run(db, "done", started_at=T0 + 2)
    running = Feed(db, "running")
    running(RunStarted(model="m", provider="mistral", params={}, at=T0 + 1))
    running(MessageAdded(role="user", content="hi", at=T0 + 1.1))
    running(TokenDelta(text="par", at=T0 + 1.2))
    done = Feed(db, "done")
    done(RunStarted(model="m", provider="mistral", params={}, at=T0 + 2))
    done(RunFinished(response="ok", at=T0 + 3))

    ids = [ended[0] for ended in db.write_sync(sweep_orphans, T0 + 10, unowned=True)]
    assert sorted(ids) == ["queued", "running"]

    for run_id, expected_seq in (("queued", 1), ("running", 4)):
        run = db.read_sync(get_run, run_id)
        assert run["status"] == "interrupted"
        assert "interrupted" in run["error"]
        assert run["ended_at"] == pytest.approx(T0 + 10)
        assert run["last_seq"] == expected_seq
        last = db.read_sync(events_after, run_id, expected_seq - 1)
        assert [(e["seq"], e["type"]) for e in last] == [(expected_seq, "run_interrupted")]
        assert last[0]["payload"]["error"] == run["error"]

    [agent] = q(db, "select * from spans where run_id = 'running'")
    assert agent["status"] == "error" and agent["end_at"] == pytest.approx(T0 + 10)
    assert "interrupted" in agent["status_message"]
    assert db.read_sync(draft_text, "running") == "par"  # the partial answer is kept

    finished = db.read_sync(get_run, "done")
    assert finished["status"] == "succeeded" and finished["last_seq"] == 2
    assert db.write_sync(sweep_orphans, T0 + 20, unowned=True) == []


def test_interrupt_on_app_start(settings, keys):
    """The app marks what a crash left running when it starts."""
    from tests.conftest import api_client

    crashed = Store(settings.db_path, url=settings.database_url)
    try:
        make_run(crashed, "crashed")
        Feed(crashed, "crashed")(RunStarted(model="m", provider="mistral", params={}, at=T0))
    finally:
        crashed.close()
    with api_client(settings, keys["admin"]) as client:
        detail = client.get("/api/runs/crashed").json()
    assert detail["run"]["status"] == "interrupted"
    assert detail["run"]["last_seq"] == 2


# --- queries ------------------------------------------------------------------------


def test_list_runs_newest_first_with_limit_and_offset(db):
    for i, started in enumerate([T0 + 5, T0 + 1, T0 + 3, T0 + 2, T0 + 4]):
        make_run(db, f"run{i}", started_at=started)
    assert db.read_sync(count_runs) == 5
    runs = db.read_sync(list_runs)
    assert [r["started_at"] for r in runs] == [T0 + 5, T0 + 4, T0 + 3, T0 + 2, T0 + 1]
    assert [r["id"] for r in runs] == ["run0", "run4", "run2", "run3", "run1"]
    assert runs[0]["params"] == {"temperature": 0.0}  # decoded
    assert [r["id"] for r in db.read_sync(list_runs, 2)] == ["run0", "run4"]
    assert [r["id"] for r in db.read_sync(list_runs, 2, 2)] == ["run2", "run3"]
    assert [r["id"] for r in db.read_sync(list_runs, 2, 4)] == ["run1"]
    assert db.read_sync(list_runs, 10, 5) == []


def test_list_runs_tie_on_start_time_is_stable(db):
    for run_id in ("b", "a", "c"):
        make_run(db, run_id, started_at=T0)
    assert [r["id"] for r in db.read_sync(list_runs)] == ["c", "b", "a"]


def test_events_after(db):
    make_run(db, "a")
    make_run(db, "b")
    fa, fb = Feed(db, "a"), Feed(db, "b")
    fa(RunStarted(model="m", provider="local", params={}, at=T0))
    fb(RunStarted(model="m", provider="local", params={}, at=T0))
    for i in range(5):
        fa(TokenDelta(text=f"t{i}", at=T0 + i))
    fb(TokenDelta(text="other", at=T0))

    everything = db.read_sync(events_after, "a", 0)
    assert [e["seq"] for e in everything] == [1, 2, 3, 4, 5, 6]
    assert everything[1] == {
        "seq": 2,
        "type": "token",
        "payload": {
            "type": "token",
            "text": "t0",
            "round": 0,
            "run_output_tokens": None,
            "at": T0,
        },
    }
    assert [e["seq"] for e in db.read_sync(events_after, "a", 4)] == [5, 6]
    assert db.read_sync(events_after, "a", 6) == []
    assert db.read_sync(events_after, "a", 99) == []
    assert [e["seq"] for e in db.read_sync(events_after, "a", 1, 2)] == [2, 3]
    assert [e["payload"]["text"] for e in db.read_sync(events_after, "b", 1)] == ["other"]
    assert db.read_sync(events_after, "nope", 0) == []


def test_draft_text(db):
    make_run(db, "d")
    feed = Feed(db, "d")
    assert db.read_sync(draft_text, "d") == ""
    feed(RunStarted(model="m", provider="local", params={}, at=T0))
    feed(MessageAdded(role="user", content="hi", at=T0))
    assert db.read_sync(draft_text, "d") == ""
    feed(TokenDelta(text="Hel", at=T0))
    feed(TokenDelta(text="lo ", at=T0))
    feed(TokenDelta(text="wörld ✓", at=T0))
    assert db.read_sync(draft_text, "d") == "Hello wörld ✓"
    feed(
        LLMCallFinished(
            model="m", provider="local", input_tokens=1, output_tokens=1, latency_ms=1, at=T0
        )
    )
    assert db.read_sync(draft_text, "d") == "Hello wörld ✓"  # not a message yet
    feed(MessageAdded(role="assistant", content="Hello wörld ✓", at=T0))
    assert db.read_sync(draft_text, "d") == ""
    feed(TokenDelta(text="again", round=1, at=T0))
    assert db.read_sync(draft_text, "d") == "again"
    assert db.read_sync(draft_text, "other-run") == ""


def test_totals(db):
    make_run(db, "p")
    make_run(db, "u")
    fp, fu = Feed(db, "p"), Feed(db, "u")
    fp(RunStarted(model="mistral-small-latest", provider="mistral", params={}, at=T0))
    fp(
        LLMCallFinished(
            model="mistral-small-latest",
            provider="mistral",
            input_tokens=100,
            output_tokens=10,
            latency_ms=1,
            at=T0,
        )
    )
    fp(RunFinished(response="x", at=T0 + 1))
    fu(RunStarted(model="zzz", provider="mistral", params={}, at=T0))
    fu(
        LLMCallFinished(
            model="zzz", provider="mistral", input_tokens=5, output_tokens=5, latency_ms=1, at=T0
        )
    )
    fu(RunFailed(error="boom", at=T0 + 3))
    make_run(db, "q")
    t = db.read_sync(totals)
    assert t["runs"] == 3
    assert t["input_tokens"] == 105 and t["output_tokens"] == 15
    usd_in, usd_out = mistral_rates(db, "mistral-small", T0)  # USD per million tokens
    assert t["cost_usd"] == pytest.approx(100 / 1e6 * usd_in + 10 / 1e6 * usd_out)
    assert t["unpriced_runs"] == 1 and t["failed"] == 1 and t["active"] == 1
    assert t["avg_latency_ms"] == pytest.approx(2000.0)


def test_a_write_that_reads_first_waits_for_another_process_instead_of_failing(tmp_path):
    """Two stores on one file, as ``serve`` and ``agentop run`` are: a write that
    reads before it writes, while the other commits in between, waits its turn."""
    server, cli = Store(tmp_path / "shared.db"), Store(tmp_path / "shared.db")
    server.write_sync(lambda db: db.execute("create table t (who text)"))
    read_done, other_wrote = threading.Event(), threading.Event()

    def reads_then_writes(db):
        db.execute("select count(*) from t").fetchone()
        read_done.set()
        other_wrote.wait(1)  # with the write lock held, the other cannot write yet
        db.execute("insert into t values ('cli')")

    def other_process():
        assert read_done.wait(10)
        server.write_sync(lambda db: db.execute("insert into t values ('server')"))
        other_wrote.set()

    thread = threading.Thread(target=other_process)
    thread.start()
    try:
        cli.write_sync(reads_then_writes)
        thread.join(15)
        rows = server.read_sync(lambda db: sorted(r[0] for r in db.execute("select who from t")))
        assert rows == ["cli", "server"]
    finally:
        server.close()
        cli.close()


def test_a_deferred_write_queued_to_an_idle_writer_runs(db):
    """A deferrable write (a fold, the settle barrier) queued while the writer waits with
    nothing else to do runs once it is quiet, without a live write to wake it (PostgreSQL
    has no WAL checkpoint to wake the writer now and then)."""

    async def scenario() -> None:
        await db.flush()  # a live write: then the writer waits, with nothing set aside
        await asyncio.sleep(0.2)
        await asyncio.wait_for(db.settle(), 5)

    asyncio.run(scenario())
