"""The compact event log (issue 15): token rows folded per model call, nothing stored twice,
memory snapshots as deltas, and every reader still gets exactly the events that were published.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.events import (
    Event,
    LLMCallFinished,
    LLMCallStarted,
    MemorySnapshot,
    MessageAdded,
    RunFinished,
    RunStarted,
    TokenDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from app.runs.activity import current_activity
from app.store import Store
from app.store.event_log import draft_text, events_after
from app.store.events import end_active_run
from app.store.migrations.m0014_compact_log import compact_log
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply
from tests.old_layout import old_shape
from tests.test_store import Feed, make_run, q

pytestmark = pytest.mark.both_backends

T0 = 1_765_000_000.123456


def normal(payload: Any) -> Any:
    """A payload as JSON gives it back (tuples become lists), for comparisons."""
    return json.loads(json.dumps(payload, default=str))


def pieces(n: int, at: float, start_tokens: int = 0, round_: int = 0) -> list[Event]:
    """``n`` streamed pieces ~20 ms apart, tokens with a tool call's argument pieces mixed in."""
    out: list[Event] = []
    for i in range(n):
        when = at + i * 0.0213 + (i % 3) * 1e-6
        if i % 50 == 49:
            out.append(
                ToolCallDelta(
                    round=round_, index=0, name="echo", text='{"x"', at=when,
                    run_output_tokens=start_tokens + i + 1,
                )
            )  # fmt: skip
        else:
            out.append(
                TokenDelta(text=f"w{i} ", round=round_, run_output_tokens=start_tokens + i + 1,
                           at=when)
            )  # fmt: skip
    return out


def a_run(tokens: int = 120) -> list[Event]:
    """Two model calls, a tool call and snapshots after every step: a native run's shape."""
    user = {"role": "user", "content": "hello"}
    answer1 = "".join(e.text for e in pieces(tokens, T0 + 1) if isinstance(e, TokenDelta))
    assistant = {"role": "assistant", "content": answer1}
    tool = {"role": "tool", "content": "echoed " * 40, "tool_call_id": "c1"}
    scratch = {"round": 0, "pending": [], "tokens": 0}
    return [
        RunStarted(model="m", provider="mistral", params={"temperature": 0.2}, at=T0),
        MessageAdded(role="user", content="hello", at=T0 + 0.1),
        MemorySnapshot(step=0, label="prompt", messages=(user,), scratch=scratch, at=T0 + 0.2),
        LLMCallStarted(model="m", at=T0 + 0.3),
        *pieces(tokens, T0 + 1),
        LLMCallFinished(
            model="m",
            provider="mistral",
            input_tokens=10,
            output_tokens=tokens,
            latency_ms=3000.0,
            at=T0 + 9,
        ),  # fmt: skip
        MessageAdded(role="assistant", content=answer1, at=T0 + 9.1),
        MemorySnapshot(
            step=1,
            label="round 1: model reply",
            messages=(user, assistant),
            scratch={**scratch, "round": 1, "pending": ["echo"], "new": True},
            at=T0 + 9.2,
        ),  # fmt: skip
        ToolCallStarted(call_id="c1", name="echo", arguments={"x": 1}, at=T0 + 9.3),
        ToolCallFinished(
            call_id="c1",
            name="echo",
            arguments={"x": 1},
            result="echoed " * 40,
            error=None,
            latency_ms=5.0,
            at=T0 + 9.4,
        ),  # fmt: skip
        MessageAdded(role="tool", content="echoed " * 40, tool_call_id="c1", at=T0 + 9.5),
        MemorySnapshot(
            step=2,
            label="round 1: tool results",
            messages=(user, assistant, tool),
            scratch={"round": 1, "pending": [], "tokens": 5},
            at=T0 + 9.6,
        ),  # fmt: skip
        LLMCallStarted(model="m", round=1, at=T0 + 10),
        *pieces(7, T0 + 11, start_tokens=tokens, round_=1),
        LLMCallFinished(
            model="m",
            provider="mistral",
            input_tokens=20,
            output_tokens=7,
            latency_ms=9.0,
            round=1,
            at=T0 + 12,
        ),  # fmt: skip
        MessageAdded(role="assistant", content="done", at=T0 + 12.1),
        RunFinished(response="done", at=T0 + 12.2),
    ]


def record(db: Store, run_id: str, events: list[Event]) -> list[dict[str, Any]]:
    """Record ``events`` as the recorder does; what it published, as JSON gives it back."""
    make_run(db, run_id)
    feed = Feed(db, run_id)
    published = []
    for event in events:
        stored, _ = feed(event)
        published.append({"seq": feed.seq, "type": stored["type"], "payload": normal(stored)})
    return published


def read_all(db: Store, run_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Page through the log as ``follow_run`` does: stop at a page shorter than ``limit``."""
    out: list[dict[str, Any]] = []
    while True:
        page = db.read_sync(events_after, run_id, after, limit)
        out.extend(page)
        if len(page) < limit:
            return [{**e, "payload": normal(e["payload"])} for e in out]
        after = page[-1]["seq"]


def assert_log_is(db: Store, run_id: str, published: list[dict[str, Any]]) -> None:
    """From every resume point, with small and large pages: exactly the published events."""
    for after in range(len(published) + 1):
        for limit in (1, 7, 1000):
            assert read_all(db, run_id, after, limit) == published[after:], (after, limit)


def test_a_finished_run_reads_back_exactly_as_published(db):
    published = record(db, "r", a_run())
    assert_log_is(db, "r", published)
    # The pieces of each call are one row, the message texts and snapshots are not repeated.
    rows = q(db, "select type, payload from events where run_id = 'r' order by seq")
    compact = [json.loads(r["payload"]) for r in rows if r["type"] == "deltas"]
    assert len(compact) == 2
    # The first answer is the join of its token texts: they are kept as lengths into it.
    assert "msg" in compact[0] and compact[0]["text"][:2] == [3, 3]
    assert "msg" not in compact[1] and compact[1]["text"][0] == "w0 "  # "done" is not their join
    assert not [r for r in rows if r["type"] in ("token", "tool_call_delta")]
    moved = {
        r["type"]: json.loads(r["payload"])
        for r in rows
        if r["type"] in ("message", "tool_call_finished", "memory_snapshot")
    }
    assert moved["message"]["content"] is None and moved["message"]["_moved"] == ["content"]
    assert moved["tool_call_finished"]["result"] is None
    assert moved["memory_snapshot"]["messages"] is None


def test_a_500_token_run_keeps_a_handful_of_rows(db):
    published = record(db, "big", a_run(tokens=500))
    assert len(published) > 500
    [count] = q(db, "select count(*) as n from events where run_id = 'big'")
    assert count["n"] < 20
    assert db.read_sync(events_after, "big", 0, 1000) == [
        {**e, "payload": e["payload"]} for e in published
    ]


def test_a_run_cut_off_mid_answer_reads_in_both_shapes(db):
    events = a_run()
    cut = next(i for i, e in enumerate(events) if isinstance(e, LLMCallFinished))
    published = record(db, "cut", events[: cut - 30])  # streaming: one row per piece
    assert [r["n"] for r in q(db, "select count(*) as n from events where type = 'token'")] != [0]
    assert_log_is(db, "cut", published)
    text = "".join(e.text for e in events[: cut - 30] if isinstance(e, TokenDelta))
    assert db.read_sync(draft_text, "cut") == text
    assert db.read_sync(current_activity, "cut").kind == "writing"
    # The server stops: the end is recorded and the cut-off pieces fold into one row.
    seq, stored, _ = db.write_sync(end_active_run, "cut", "run_interrupted", T0 + 99, "stopped")
    published.append({"seq": seq, "type": stored["type"], "payload": normal(stored)})
    assert_log_is(db, "cut", published)
    assert q(db, "select count(*) as n from events where type = 'token'") == [{"n": 0}]
    assert db.read_sync(draft_text, "cut") == text  # a page of the ended run: the partial answer


def test_activity_and_draft_read_through_folded_pieces(db):
    events = a_run(tokens=60)
    published = record(db, "a", events)
    tool_piece = next(e["seq"] for e in published if e["type"] == "tool_call_delta")
    token = next(e["seq"] for e in published if e["type"] == "token")
    # Resumed mid-call (Last-Event-ID inside a folded row): what the run was doing then.
    assert db.read_sync(current_activity, "a", token).kind == "writing"
    state = db.read_sync(current_activity, "a", tool_piece)
    assert (state.kind, state.name, state.args) == ("tool_args", "echo", '{"x"')
    assert db.read_sync(current_activity, "a") is None  # the run is over


def test_memory_snapshots_are_deltas_and_rebuild_whole(db):
    events = a_run()
    record(db, "m", events)
    rows = q(db, "select step, messages, kept, refs from memory_snapshots where run_id = 'm'")
    assert [r["kept"] for r in rows] == [None, 1, 2]  # whole first step, then what changed
    assert "hello" not in rows[1]["messages"] + rows[2]["messages"]
    # The long answer and tool result are the run's messages: referred to, not repeated.
    assert json.loads(rows[1]["refs"]) == {"0": 126} and "w0 w1" not in rows[1]["messages"]
    assert json.loads(rows[2]["refs"]) == {"0": 130} and "echoed" not in rows[2]["messages"]
    snaps = [e for e in events if isinstance(e, MemorySnapshot)]
    from app.memory.snapshots import all_snapshots, get_snapshot

    whole = db.read_sync(all_snapshots, "m")
    assert [(s["messages"], s["scratch"]) for s in whole] == [
        (normal(s.messages), normal(s.scratch)) for s in snaps
    ]
    assert "kept" not in whole[0] and "scratch_removed" not in whole[0]
    assert db.read_sync(get_snapshot, "m", 1)["scratch"]["new"] is True
    assert "new" not in db.read_sync(get_snapshot, "m", 2)["scratch"]  # a removed key


def test_a_snapshot_delta_tells_apart_values_that_compare_equal(db):
    """1, 1.0 and true are == in Python but not the same JSON value: each change is kept.
    A step written by another connection (another replica) is built on, not the one this
    connection remembers."""
    from app.memory.snapshots import all_snapshots
    from app.store.snapshot_deltas import insert_snapshot

    make_run(db, "eq")
    user = {"role": "user", "content": "hi"}
    scratches = [{"n": 1, "f": 2.0}, {"n": True, "f": 2}, {"n": 1.0, "f": 2}]
    for step, scratch in enumerate(scratches):
        snap = {"step": step, "label": f"s{step}", "messages": [user], "scratch": scratch}
        db.write_sync(insert_snapshot, "eq", step + 1, T0 + step, snap)
    # Another writer adds step 3 behind this connection's back.
    other = Store(db.path, url=db.url)
    try:
        later = {"step": 3, "label": "s3", "messages": [user, user], "scratch": {"n": 2}}
        other.write_sync(insert_snapshot, "eq", 4, T0 + 3, later)
    finally:
        other.close()
    last = {"step": 4, "label": "s4", "messages": [user, user, user], "scratch": {"n": 2}}
    db.write_sync(insert_snapshot, "eq", 5, T0 + 4, last)

    whole = db.read_sync(all_snapshots, "eq")
    got = [(s["scratch"], len(s["messages"])) for s in whole]
    expected = [*((sc, 1) for sc in scratches), ({"n": 2}, 2), ({"n": 2}, 3)]
    assert json.dumps(got) == json.dumps(expected)  # JSON text: 1, 1.0 and true kept apart
    rows = q(db, "select kept from memory_snapshots where run_id = 'eq' order by step")
    assert [r["kept"] for r in rows] == [None, 1, 1, 1, 2]  # deltas on the right steps


@pytest.mark.sqlite_only
def test_migration_converts_old_rows(db):
    published = record(db, "old", a_run())
    cut = record(db, "live", a_run()[:40])  # still running, mid-answer
    db.write_sync(old_shape, "old", published)
    db.write_sync(old_shape, "live", cut)
    assert q(db, "select count(*) as n from events where run_id = 'old'") == [{"n": len(published)}]
    db.write_sync(compact_log)
    assert_log_is(db, "old", published)
    assert_log_is(db, "live", cut)
    assert q(db, "select count(*) as n from events where run_id = 'old'")[0]["n"] < 20
    # The pieces a live run still streams stay rows of their own (its recorder folds them).
    assert q(db, "select count(*) as n from events where run_id = 'live' and type = 'token'")[0][
        "n"
    ] == sum(1 for e in cut if e["type"] == "token")
    kept = q(db, "select kept, refs from memory_snapshots where run_id = 'old' order by step")
    assert [r["kept"] for r in kept] == [None, 1, 2]
    assert [r["refs"] is not None for r in kept] == [False, True, True]
    db.write_sync(compact_log)  # twice: nothing changes
    assert_log_is(db, "old", published)


@pytest.mark.sqlite_only
def test_migration_leaves_odd_rows_readable(db):
    make_run(db, "odd")

    def odd(db: Any) -> None:
        db.execute(
            "insert into events (run_id, seq, type, at, payload) values"
            " ('odd', 1, 'message', 1, 'not json'), ('odd', 2, 'token', 2, '{\"text\": 1}'),"
            " ('odd', 3, 'token', 3, '[]'), ('odd', 4, 'memory_snapshot', 4, '{}')"
        )
        db.execute(
            "insert into memory_snapshots (run_id, seq, step, messages, scratch) values"
            " ('odd', 4, 0, 'not json', null), ('odd', 5, 1, '[{\"a\": 1}]', '{\"k\": 2}')"
        )

    db.write_sync(odd)
    db.write_sync(compact_log)
    got = db.read_sync(events_after, "odd", 0)
    assert [e["payload"] for e in got] == ["not json", {"text": 1}, [], {}]
    from app.memory.snapshots import all_snapshots

    snaps = db.read_sync(all_snapshots, "odd")
    assert snaps[0]["messages"] == "not json" and snaps[1]["messages"] == [{"a": 1}]


# --- through the app -----------------------------------------------------------------------


def _sse_data(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")
    ]


def _views(client: Any, run_id: str) -> dict[str, Any]:
    fragment = {"HX-Request": "true"}
    steps = client.get(f"/api/runs/{run_id}/memory").json()["snapshots"]
    return {
        "detail": client.get(f"/api/runs/{run_id}").json(),
        "memory": client.get(f"/api/runs/{run_id}/memory").json(),
        "steps": [
            client.get(f"/runs/{run_id}/memory?step={s['step']}", headers=fragment).text
            for s in steps
        ],
        "events": _sse_data(client.get(f"/api/runs/{run_id}/events").text),
    }


@pytest.fixture
def tool_run(client, fake_mistral) -> str:
    fake_mistral.add(
        Reply(
            text="Let me speak, " * 12,
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "hi"}}],
            args_chunk_size=3,
        ),
        Reply(text="I could not speak. " * 20, usage=(40, 5)),
    )
    r = client.post("/api/runs", json={"prompt": "say hi", "model": MISTRAL_MODEL})
    run_id = r.json()["run_id"]
    assert wait_for_run(client, run_id)["run"]["status"] == "succeeded"
    return run_id


def test_resumed_streams_deliver_exactly_the_rest(client, tool_run):
    everything = _sse_data(client.get(f"/api/runs/{tool_run}/events").text)
    assert sum(1 for e in everything if e["type"] == "token") > 50
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    for after in range(len(everything) + 1):
        headers = {"Last-Event-ID": str(after)}
        text = client.get(f"/api/runs/{tool_run}/events", headers=headers).text
        assert _sse_data(text) == everything[after:], after


@pytest.mark.sqlite_only
def test_pages_and_api_read_the_same_after_migrating_old_rows(client, tool_run):
    store = client.app.state.store
    before = _views(client, tool_run)
    published = [
        {"seq": e["seq"], "type": e["type"], "payload": e["payload"]} for e in before["events"]
    ]
    store.write_sync(old_shape, tool_run, published)
    assert _views(client, tool_run) == before  # the old shape reads as before
    store.write_sync(compact_log)
    assert _views(client, tool_run) == before  # and so does the migrated one
    rows = store.read_sync(
        lambda db: db.execute("select count(*) from events where run_id = ?", [tool_run]).fetchone()
    )
    assert rows[0] < len(published) / 4


def test_the_recorder_folds_each_call_from_the_pieces_it_wrote(db):
    """The live path: the recorder hands each call's pieces, as it wrote them, to the fold
    (no read-back); the log then reads back as the events a fed run published."""
    import asyncio

    from app.runs.recorder import Recorder
    from app.store.live import Broker

    make_run(db, "live")

    async def run() -> None:
        recorder = Recorder(db, Broker(), "live")
        for event in a_run():
            await recorder.emit(event)
        await db.settle()  # the folds wait for a quiet writer

    asyncio.run(run())
    kinds = [r["type"] for r in q(db, "select type from events where run_id = 'live'")]
    assert kinds.count("deltas") == 2
    assert "token" not in kinds and "tool_call_delta" not in kinds
    assert read_all(db, "live", 0, 1000) == record(db, "fed", a_run())
