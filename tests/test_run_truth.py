"""Runs end with the truth: a stream that misbehaves after HTTP 200 fails the run.

The real app and the real ``mistralai`` SDK run against the local fake server
(tests/fake_mistral.py), which misbehaves on cue: an empty stream, a stream
cut off before its finish reason, an error event mid-stream, a connection
dropped mid-body, a context overflow, a stream with no usage. A failure is
``failed`` with the provider's own words; missing usage is unknown (never
0 tokens, never "$0") on the run, its pages, the dashboard and in exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from app.store.events import record_event
from app.store.runs import create_run, get_run
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply
from tests.receivers import wait_until
from tests.test_mistral_provider import of_type, sse_events

pytestmark = pytest.mark.both_backends

CONTEXT = "the prompt does not fit the model's context window"
NO_USAGE_COST = "unpriced (no usage reported)"


def start_run(client: Any, prompt: str, key: str | None = None, **body: Any) -> str:
    """POST /api/runs; ``key`` for a browser-like client, which sends no API key itself."""
    r = client.post(
        "/api/runs",
        json={"prompt": prompt, "model": MISTRAL_MODEL, "tools": [], **body},
        headers={"X-API-Key": key} if key else {},
    )
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def soup(client: Any, path: str) -> BeautifulSoup:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return BeautifulSoup(r.text, "html.parser")


# --- a stream that misbehaves after 200 fails the run --------------------------------------

MISBEHAVING = [
    pytest.param(Reply(text="never sent", fault="empty"), "sent an empty stream", id="empty"),
    pytest.param(
        Reply(text="Half an answ", fault="cut"), "cut off before a finish reason", id="cut"
    ),
    pytest.param(
        Reply(text="Partial", fault="error_data", error_message="upstream worker crashed"),
        "sent an error mid-stream: upstream worker crashed",
        id="error-data",
    ),
    pytest.param(
        Reply(text="Partial", fault="error_event", error_message="overloaded, try later"),
        "sent an error mid-stream: overloaded, try later",
        id="error-event",
    ),
    pytest.param(
        Reply(text="Some text", fault="drop"),
        "broke mid-stream: RemoteProtocolError",
        id="dropped-mid-body",
    ),
]


@pytest.mark.parametrize(("reply", "words"), MISBEHAVING)
def test_a_stream_that_misbehaves_after_200_fails_the_run(client, fake_mistral, reply, words):
    fake_mistral.add(reply)
    run_id = start_run(client, "answer me")
    detail = wait_for_run(client, run_id)
    run = detail["run"]
    assert run["status"] == "failed", run
    assert not run["error"].startswith("ProviderError")  # the provider's words, no class name
    assert words in run["error"]
    assert run["response"] is None
    assert [m["role"] for m in detail["messages"]] == ["user"]  # no empty answer recorded
    assert not [s for s in detail["spans"] if s["kind"] == "llm"]

    events = sse_events(client, run_id)
    assert events[-1]["event"] == "run_failed"
    assert words in events[-1]["data"]["payload"]["error"]
    assert not of_type(events, "run_finished")
    assert len(fake_mistral.requests) == 1  # a 200 is not retried into a second answer


def test_the_run_page_shows_the_failure_in_the_providers_words(page_client, keys, fake_mistral):
    fake_mistral.add(Reply(text="x", fault="error_event", error_message="model melted down"))
    run_id = start_run(page_client, "hello", keys["admin"])
    assert wait_for_run(page_client, run_id)["run"]["status"] == "failed"
    page = soup(page_client, f"/runs/{run_id}")
    assert page.select_one("#run-status").text.strip() == "failed"
    assert "model melted down" in page.select_one("#run-error").text


# --- context overflow ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        pytest.param(
            Reply(
                status=400,
                error_message="Prompt contains 40960 tokens, too large for model with"
                " 32768 maximum context length",
            ),
            "Mistral API error 400: Prompt contains 40960 tokens",
            id="400",
        ),
        pytest.param(
            Reply(
                text="",
                fault="error_data",
                error_message="the request exceeds the available context size",
            ),
            "the request exceeds the available context size",
            id="error-event",
        ),
        pytest.param(
            Reply(text="", finish_reason="length", usage=(2048, 0)),
            "stopped at 'length' after 0 of 64 tokens",
            id="finish-length",
        ),
    ],
)
def test_a_context_overflow_fails_with_a_clear_message(client, fake_mistral, reply, words):
    fake_mistral.add(reply)
    run_id = start_run(client, "a very long prompt " * 20)
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "failed", run
    assert run["error"].startswith(f"{CONTEXT}: ")
    assert words in run["error"]
    assert len(fake_mistral.requests) == 1  # a 400 is not retried


def test_an_answer_cut_at_max_tokens_still_succeeds(client, fake_mistral):
    # "length" at the max_tokens the run asked for (64 in the test config) is a
    # complete, if short, answer: not a context overflow.
    fake_mistral.add(Reply(text="A long answer that", finish_reason="length", usage=(30, 64)))
    run_id = start_run(client, "write a lot")
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "succeeded", run
    assert run["response"] == "A long answer that"
    [llm] = of_type(sse_events(client, run_id), "llm_call_finished")
    assert llm["finish_reason"] == "length"


# --- no usage: tokens unknown, cost unpriced, never $0 --------------------------------------


def test_no_usage_is_unknown_not_zero(page_client, keys, fake_mistral):
    client = page_client
    fake_mistral.add(Reply(text="An answer with no usage.", fault="no_usage"))
    run_id = start_run(client, "how many tokens?", keys["admin"])
    detail = wait_for_run(client, run_id)
    run = detail["run"]
    assert run["status"] == "succeeded", run
    assert run["response"] == "An answer with no usage."
    assert run["usage_unknown_calls"] == 1
    assert run["cost_status"] == "unpriced"
    assert not run["cost_usd"]

    [llm] = of_type(sse_events(client, run_id), "llm_call_finished")
    assert llm["input_tokens"] is None and llm["output_tokens"] is None
    assert llm["cost_status"] == "unpriced" and llm["cost_usd"] is None
    assert llm["cost_reason"] == "no usage reported"
    [span] = [s for s in detail["spans"] if s["kind"] == "llm"]
    assert span["input_tokens"] is None and span["output_tokens"] is None
    assert span["status"] == "ok"

    # The run page: tokens unknown, cost unpriced with its reason, no "$0" anywhere.
    totals = soup(client, f"/runs/{run_id}").select_one("#run-totals")
    assert totals.select_one('[data-field="input_tokens"]').text.strip() == "unknown"
    assert totals.select_one('[data-field="output_tokens"]').text.strip() == "unknown"
    assert totals.select_one('[data-field="cost"]').text.strip() == NO_USAGE_COST
    assert "$0" not in totals.text
    # The runs list.
    row = soup(client, "/runs").select_one(f"#run-row-{run_id}")
    cells = [td.text.strip() for td in row.select("td.num")]
    assert "unknown" in cells and NO_USAGE_COST in cells
    # The dashboard says some usage is unknown.
    dashboard = soup(client, "/")
    assert "no usage reported" in dashboard.select_one("#kpis").text
    assert "1 run(s) had calls with no usage reported" in dashboard.select_one("#chart-tokens").text

    # An export carries unknown as null, never 0.
    r = client.post(
        "/api/exports",
        json={"kind": "huggingface", "format": "jsonl", "push": False},
        headers={"X-API-Key": keys["admin"]},
    )
    assert r.status_code == 202, r.text
    export = _finished_export(client, r.json()["export_id"])
    assert export["status"] == "succeeded", export
    lines = (Path(export["result"]["folder"]) / "data" / "runs.jsonl").read_text().splitlines()
    [record] = [json.loads(line) for line in lines if json.loads(line)["id"] == run_id]
    assert record["input_tokens"] is None and record["output_tokens"] is None
    assert record["usage_unknown_calls"] == 1 and record["cost_status"] == "unpriced"


def _finished_export(client: Any, export_id: int) -> dict[str, Any]:
    return wait_until(
        lambda: (lambda e: e if e["status"] in ("succeeded", "failed") else None)(
            client.get(f"/api/exports/{export_id}").json()
        ),
        60,
        f"export {export_id}",
    )


def test_known_usage_plus_unknown_usage_is_a_lower_bound(page_client, keys, fake_mistral):
    client = page_client
    fake_mistral.add(
        Reply(
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "x"}}], usage=(100, 10)
        ),
        Reply(text="done", fault="no_usage"),
    )
    run_id = start_run(client, "speak", keys["admin"], tools=["elevenlabs_speak"])
    run = wait_for_run(client, run_id)["run"]
    assert run["status"] == "succeeded", run
    assert (run["input_tokens"], run["output_tokens"]) == (100, 10)  # the reported ones
    assert run["usage_unknown_calls"] == 1
    assert run["cost_status"] == "partial"
    assert run["cost_usd"] == pytest.approx((100 * 0.1 + 10 * 0.3) / 1e6)

    totals = soup(client, f"/runs/{run_id}").select_one("#run-totals")
    assert totals.select_one('[data-field="input_tokens"]').text.strip() == "≥ 100"
    assert totals.select_one('[data-field="output_tokens"]').text.strip() == "≥ 10"
    cost = totals.select_one('[data-field="cost"]').text.strip()
    assert cost == "≥ $0.000013 (partly unpriced: no usage reported)"


# --- contract C1: what the recorder does with unknown usage and failed calls ---------------


def test_recorder_stores_a_failed_llm_call_with_unknown_usage(db):
    db.write_sync(
        create_run,
        {"id": "ext", "model": "gpt-x", "provider": "openai", "prompt": "p", "source": "otlp"},
    )
    events = [
        {"type": "run_started", "at": 10.0, "model": "gpt-x", "provider": "openai", "params": {}},
        {
            "type": "llm_call_finished",
            "at": 11.0,
            "model": "mistral-small-latest",
            "provider": "mistral",
            "input_tokens": 40,
            "output_tokens": 4,
            "latency_ms": 500.0,
        },
        {
            "type": "llm_call_finished",
            "at": 12.0,
            "model": "mistral-small-latest",
            "provider": "mistral",
            "input_tokens": None,
            "output_tokens": None,
            "latency_ms": 300.0,
            "span_id": "abc123",
            "status": "error",
            "error": "upstream 502",
        },
    ]
    for seq, event in enumerate(events, 1):
        stored, _ = db.write_sync(record_event, "ext", seq, event)
    assert stored["cost_status"] == "unpriced" and stored["cost_reason"] == "no usage reported"

    spans = db.read_sync(
        lambda conn: {
            r["span_id"]: dict(r) for r in conn.query("select * from spans where kind = 'llm'")
        }
    )
    failed = spans["abc123"]
    assert failed["status"] == "error"
    assert failed["input_tokens"] is None and failed["cost_usd"] is None
    attributes = json.loads(failed["attributes"])
    assert failed["status_message"] == "upstream 502"
    assert attributes["agentop.cost_reason"] == "no usage reported"
    [ok] = [s for s in spans.values() if s["span_id"] != "abc123"]
    assert ok["status"] == "ok" and ok["input_tokens"] == 40

    run = db.read_sync(get_run, "ext")
    assert (run["input_tokens"], run["output_tokens"]) == (40, 4)
    assert run["usage_unknown_calls"] == 1
    assert run["cost_status"] == "partial"
