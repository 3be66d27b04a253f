"""OTLP decoding runs off the event loop; a batch's spans are written with few statements.

The decode test records the thread each step ran on (the export pipeline on
the loop, the body's parsing and the conversion into span and log records
wherever they ran) through monkeypatched wrappers of the real functions.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app.ingest import api, pipeline
from tests.otlp_requests import export, only_run, post, span

pytestmark = pytest.mark.both_backends


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, seen: dict[str, int]) -> None:
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen[name] = threading.get_ident()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _spy_loop(monkeypatch: pytest.MonkeyPatch, name: str, seen: dict[str, int]) -> None:
    real = getattr(pipeline, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen["loop"] = threading.get_ident()
        return await real(*args, **kwargs)

    monkeypatch.setattr(api, name, wrapper)


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_trace_decoding_runs_off_the_event_loop(client, monkeypatch, encoding):
    seen: dict[str, int] = {}
    _spy(monkeypatch, api, "parse_request", seen)
    _spy(monkeypatch, pipeline, "traces_of", seen)
    _spy_loop(monkeypatch, "export_traces", seen)
    request = export(
        span("invoke_agent a", 7, 1, gen_ai__operation__name="invoke_agent"),
        span("chat m", 7, 2, parent=1, gen_ai__operation__name="chat"),
    )
    r = post(client, request, encoding)
    assert r.status_code == 200, r.text
    assert set(seen) == {"parse_request", "traces_of", "loop"}
    assert seen["parse_request"] != seen["loop"]
    assert seen["traces_of"] != seen["loop"]
    spans = client.get(f"/api/runs/{only_run(client)['id']}/spans").json()
    assert len(spans) == 2


def test_log_decoding_runs_off_the_event_loop(client, monkeypatch):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    seen: dict[str, int] = {}
    _spy(monkeypatch, api, "parse_request", seen)
    _spy(monkeypatch, pipeline, "logs_of", seen)
    _spy_loop(monkeypatch, "export_logs", seen)
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.trace_id = (9).to_bytes(16, "big")
    record.span_id = (1).to_bytes(8, "big")
    record.body.string_value = "hello"
    r = client.post(
        "/v1/logs",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert r.status_code == 200, r.text
    assert set(seen) == {"parse_request", "logs_of", "loop"}
    assert seen["parse_request"] != seen["loop"]
    assert seen["logs_of"] != seen["loop"]


def test_retried_batch_is_recorded_once_and_runs_keep_their_params(client):
    """A batch sent twice (an exporter's retry) adds nothing; a later span's params are merged."""
    first = export(
        span("chat m", 11, 2, parent=1, gen_ai__operation__name="chat"),
        span("execute_tool t", 11, 3, parent=1, gen_ai__operation__name="execute_tool"),
    )
    assert post(client, first, "json").json()["agentop"]["accepted"] == 2
    again = post(client, first, "json")
    assert again.json()["agentop"]["duplicates"] == 2
    later = export(
        span(
            "chat m",
            11,
            4,
            parent=1,
            gen_ai__operation__name="chat",
            gen_ai__request__temperature=0.3,
        ),
        span("invoke_agent a", 11, 1, gen_ai__operation__name="invoke_agent"),
    )
    r = post(client, later, "json").json()["agentop"]
    assert r["accepted"] == 2 and r["duplicates"] == 0
    run = only_run(client)
    detail = client.get(f"/api/runs/{run['id']}").json()
    assert detail["run"]["status"] == "succeeded"
    assert detail["run"]["params"]["temperature"] == 0.3
    spans = client.get(f"/api/runs/{run['id']}/spans").json()
    assert sorted(s["span_id"] for s in spans) == [f"{i:016x}" for i in (1, 2, 3, 4)]
    events = [s["events"] for s in spans]
    assert all(e == [] for e in events)


def test_packed_cells_round_trip_and_shrink_genai_attributes():
    """A packed cell gives back its text exactly; an LLM span's attributes shrink several times."""
    import json

    from app.store import packed_cells
    from app.store.spans import stored_cell

    history = [
        {"role": "user", "parts": [{"type": "text", "content": "Quelle heure est-il ? ☕"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "Il est midi."}]},
    ]
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "mistral_ai",
        "gen_ai.request.model": "mistral-small-latest",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.input.messages": json.dumps(history, ensure_ascii=False),
        "gen_ai.output.messages": json.dumps(history[1:], ensure_ascii=False),
    }
    cell = stored_cell(attributes)  # packed when spans.PACK_CELLS is on
    text = packed_cells.unpack(cell) if isinstance(cell, bytes) else cell
    assert isinstance(text, str) and json.loads(text) == attributes
    packed = packed_cells.pack(text)
    assert isinstance(packed, bytes) and len(packed) * 2 < len(text.encode())
    assert packed_cells.unpack(packed) == text
    assert packed_cells.pack("[]") == "[]"  # short cells stay text
    assert packed_cells.unpack(b"\x7fnot a packed cell") is None
    assert packed_cells.unpack(bytes([packed_cells.VERSION]) + b"garbage") is None
