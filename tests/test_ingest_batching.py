"""An ingest batch writes a trace's run row once and its events compactly (issue 15).

The events of a trace go in one ``executemany`` and the run row's changes in
one UPDATE (``app.store.run_patch``), so the rollup triggers run once per
trace; event payloads leave ``type`` and ``at`` to the row's columns and a
message to its ``messages`` row. What matters to a user is checked here:
the run's totals, latency and rollups are right, and every reader gets back
exactly the events that were published live.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest

from app.ingest.otlp import ingest_spans
from app.ingest.prepare import traces_of
from app.store import Store
from app.store.event_log import read_events
from app.store.events import record_event
from app.store.packed_cells import EVENT_VERSION, unpack
from app.store.run_patch import RunPatch
from tests.otlp_requests import T0, export, span
from tests.rollup_recompute import assert_rollups_match
from tests.test_store import q

pytestmark = pytest.mark.both_backends

CHAT = {"gen_ai__operation__name": "chat", "gen_ai__provider__name": "mistral_ai"}


def chat(trace: int, span_id: int, inputs: list, outputs: list, **extra: Any) -> Any:
    return span(
        "chat mistral-small-latest",
        trace,
        span_id,
        parent=1,
        gen_ai__request__model="mistral-small-latest",
        gen_ai__usage__input_tokens=100 + span_id,
        gen_ai__usage__output_tokens=10,
        gen_ai__input__messages=json.dumps(inputs),
        gen_ai__output__messages=json.dumps(outputs),
        **CHAT,
        **extra,
    )


def text(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


ASK = text("user", "weather in Paris?")
CALL = {
    "role": "assistant",
    "parts": [{"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}}],
}
RESULT = {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "18C"}]}
ANSWER = text("assistant", "18C in Paris")


def children(trace: int) -> list[Any]:
    return [
        chat(trace, 2, [ASK], [CALL]),
        span(
            "execute_tool weather",
            trace,
            3,
            parent=1,
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name="weather",
            gen_ai__tool__call__id="c1",
        ),
        chat(trace, 4, [ASK, CALL, RESULT], [ANSWER]),
    ]


def root(trace: int) -> Any:
    out = span("invoke_agent weather-bot", trace, 1, gen_ai__operation__name="invoke_agent")
    out.start_time_unix_nano = T0  # the root starts before every child
    return out


def ingest(db: Store, *spans: Any) -> list[Any]:
    """Ingest ``spans`` as one request; the events it published, in order."""
    records, rejected = traces_of(export(*spans))
    assert not rejected
    return db.write_sync(ingest_spans, records).events


def as_published(events: list[Any]) -> list[str]:
    """Events as the live stream sends them (key order kept), stored ones only."""
    return [
        json.dumps({"seq": e.seq, "type": e.type, "payload": e.payload}, default=str)
        for e in events
        if e.type != "run_created"
    ]


def read_back(db: Store, run_id: str) -> list[str]:
    return [json.dumps(e, default=str) for e in db.read_sync(read_events, run_id, 0)]


def test_a_trace_in_two_batches_reads_back_exactly_as_published(db):
    published = ingest(db, *children(7))
    published += ingest(db, root(7))  # the root comes last, with the earliest start
    [run] = q(db, "select * from runs")
    assert read_back(db, run["id"]) == as_published(published)
    kinds = [e.type for e in published if e.type != "run_created"]
    assert kinds.count("message") == 4 and kinds[-1] == "run_finished"
    # The run's totals and its latency from the root's start are those of its spans.
    assert (run["input_tokens"], run["output_tokens"], run["tool_calls"]) == (206, 20, 1)
    assert run["status"] == "succeeded" and run["prompt"] == "weather in Paris?"
    assert run["started_at"] == T0 / 1e9
    assert abs(run["latency_ms"] - (run["ended_at"] - T0 / 1e9) * 1000) < 1e-6
    db.read_sync(assert_rollups_match)


@pytest.mark.sqlite_only
def test_message_events_are_kept_once_and_heads_by_the_columns(db):
    ingest(db, *children(8), root(8))
    rows = q(db, "select type, typeof(payload) as kind, payload from events order by seq")
    messages = [r for r in rows if r["type"] == "message"]
    # Every value of a message event is in its ``messages`` row: the event row keeps nothing.
    assert {bytes(r["payload"]) for r in messages} == {b"{}"}
    # Other payloads leave their type and time to the row's columns; long ones are packed.
    for row in rows:
        assert row["kind"] == "blob", row
        cell = bytes(row["payload"])
        text = cell.decode() if cell[:1] == b"{" else unpack(cell)
        assert text is not None and '"type"' not in text and '"at"' not in text, row
    finished = [bytes(r["payload"]) for r in rows if r["type"] == "llm_call_finished"]
    assert finished and all(cell[0] == EVENT_VERSION for cell in finished)


@pytest.mark.sqlite_only
def test_a_trace_updates_its_run_row_once_per_batch(db):
    ingest(db, chat(9, 5, [ASK], [ANSWER]))  # the run is open: the next batch adds to it
    statements: list[str] = []

    def traced(db_: Any, records: list[Any]) -> Any:
        db_.conn.set_trace_callback(statements.append)
        try:
            return ingest_spans(db_, records)
        finally:
            db_.conn.set_trace_callback(None)

    records, _ = traces_of(export(*children(9)))
    db.write_sync(traced, records)
    # The trace callback repeats a statement for each statement of its triggers.
    updates = {s for s in statements if s.lower().startswith("update runs")}
    assert len(updates) == 1, "\n".join(updates)
    [run] = q(db, "select * from runs")
    assert (run["input_tokens"], run["output_tokens"], run["tool_calls"]) == (311, 30, 1)
    db.read_sync(assert_rollups_match)


def test_text_payloads_written_before_read_as_they_are(db):
    """A payload stored as text (older rows) keeps its own type and time, as written."""

    def old(db_: Any) -> None:
        db_.execute("insert into runs (id, status, started_at) values ('old', 'running', 1)")
        db_.execute(
            "insert into events (run_id, seq, type, at, payload) values"
            """ ('old', 1, 'message', 1, '{"type": "message", "at": 1, "role": "user"}'),"""
            """ ('old', 2, 'run_failed', 2, '{"error": "x"}')"""
        )

    db.write_sync(old)
    assert [e["payload"] for e in db.read_sync(read_events, "old", 0)] == [
        {"type": "message", "at": 1, "role": "user"},
        {"error": "x"},
    ]


def test_values_json_holds_differently_read_back_as_before(db):
    """NaN, a datetime or a number key read back as ``encode_json`` would give them."""
    when = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)
    params = {"temperature": math.nan, "since": when, "by_n": {1: "one"}}

    def write(db_: Any) -> None:
        db_.execute("insert into runs (id, status, started_at) values ('odd', 'queued', 1)")
        patch = RunPatch("odd")
        event = {"type": "run_started", "at": 1.5, "model": "m", "provider": "otlp"}
        record_event(
            db_, "odd", 1, {**event, "params": params, "external_spans": True}, patch=patch
        )
        patch.write(db_)

    db.write_sync(write)
    [started] = db.read_sync(read_events, "odd", 0)
    stored = started["payload"]["params"]
    assert math.isnan(stored["temperature"])
    assert stored["since"] == str(when) and stored["by_n"] == {"1": "one"}
