"""The trace view: a run's spans as a tree with a waterfall, each span's detail, the JSON twin.

Spans come in as a user's would: an ingested trace posted over OTLP/HTTP
(protobuf, built from the real ``opentelemetry.proto`` types, with a log
record on one span), and a native run against the fake Mistral server. Odd
rows (corrupt JSON cells, nulls, missing parents, huge values, HTML) are
written straight into the store, as an old version or a hand-edited
database could leave them, and every view must still answer 200.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from bs4 import BeautifulSoup
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from app.store.runs import create_run
from app.traces.context import MAX_INDENT, MAX_ROWS
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply
from tests.otlp_requests import PROTOBUF, T0, any_value, export, only_run, post, span
from tests.test_api_schema import assert_conforms, openapi, resolved

HTML = {"Accept": "text/html"}
HX = {"Accept": "text/html", "HX-Request": "true"}
TRACE = 0x5EED0000000000000000000000000001
CONTRACT = {
    "id", "run_id", "trace_id", "span_id", "parent_span_id", "kind", "span_kind", "name",
    "start_at", "end_at", "status", "status_message", "input_tokens", "output_tokens",
    "cost_usd", "attributes", "events", "links", "resource", "scope", "depth", "logs",
}  # fmt: skip


def _at(span_: Span, start_ms: float, end_ms: float) -> Span:
    span_.start_time_unix_nano = T0 + int(start_ms * 1_000_000)
    span_.end_time_unix_nano = T0 + int(end_ms * 1_000_000)
    return span_


def ingest_nested_trace(client: Any) -> str:
    """An agent with a model call, a failing tool call (and its HTTP call), and an orphan."""
    root = _at(
        span("invoke_agent helper", TRACE, 1, gen_ai__operation__name="invoke_agent"), 0, 100
    )
    llm = _at(
        span(
            "chat gpt-4o-mini",
            TRACE,
            2,
            parent=1,
            gen_ai__operation__name="chat",
            gen_ai__request__model="gpt-4o-mini",
            gen_ai__request__temperature=0.25,
            gen_ai__usage__input_tokens=12,
            gen_ai__usage__output_tokens=3,
        ),
        40,
        90,
    )
    llm.kind = Span.SPAN_KIND_CLIENT
    event = llm.events.add(name="gen_ai.content.prompt", time_unix_nano=T0 + 41_000_000)
    event.attributes.append(KeyValue(key="gen_ai.prompt", value=any_value("hi <script>x</script>")))
    # Started before the model call, so it comes first among the agent's children.
    tool = _at(
        span("execute_tool search", TRACE, 3, parent=1, error="search backend is down"), 5, 35
    )
    http = _at(span("GET /search", TRACE, 4, parent=3, http__response__status_code=503), 10, 30)
    orphan = _at(span("late child", TRACE, 5, parent=0x99), 95, 99)
    request = export(orphan, http, llm, root, tool)  # any order: the tree comes from the parents
    resource = request.resource_spans[0].resource
    resource.attributes.append(KeyValue(key="service.name", value=any_value("trace-test-svc")))
    request.resource_spans[0].scope_spans[0].scope.version = "1.2.3"
    r = post(client, request, "protobuf")
    assert r.status_code == 200, r.text

    logs = ExportLogsServiceRequest()
    record = (
        logs.resource_logs.add()
        .scope_logs.add()
        .log_records.add(
            time_unix_nano=T0 + 60_000_000,
            severity_text="WARN",
            event_name="app.retry",
            trace_id=TRACE.to_bytes(16, "big"),
            span_id=(2).to_bytes(8, "big"),
        )
    )
    record.body.CopyFrom(any_value("retrying after <b>429</b>"))
    record.attributes.append(KeyValue(key="attempt", value=any_value(2)))
    r = client.post("/v1/logs", content=logs.SerializeToString(), headers=PROTOBUF)
    assert r.status_code == 200, r.text
    return only_run(client)["id"]


def soup(text: str) -> BeautifulSoup:
    return BeautifulSoup(text, "html.parser")


def trace_rows(client: Any, run_id: str, headers: dict[str, str] = HX) -> list[Any]:
    r = client.get(f"/runs/{run_id}/trace", headers=headers)
    assert r.status_code == 200, r.text[:2000]
    return soup(r.text).select("tr.span-row")


def name_of(row: Any) -> str:
    return row.select_one(".span-name").get_text(strip=True)


def depths(rows: list[Any]) -> list[tuple[str, int]]:
    return [(name_of(row), int(row["data-depth"])) for row in rows]


def test_an_ingested_trace_is_a_tree_with_its_failure_marked(client):
    run_id = ingest_nested_trace(client)
    rows = trace_rows(client, run_id)
    assert depths(rows) == [
        ("invoke_agent helper", 0),
        ("execute_tool search", 1),
        ("GET /search", 2),
        ("chat gpt-4o-mini", 1),
        ("late child", 0),  # its parent was never sent: shown at the top, not hidden
    ]
    failed = [name_of(row) for row in rows if "span-failed" in row["class"]]
    assert failed == ["execute_tool search"]
    # Said in words, not only in red.
    assert "✕ search backend is down" in rows[1].select_one(".span-error").get_text()
    llm = rows[3]
    assert "12 in · 3 out" in llm.get_text() and "1 log" in llm.get_text()
    assert llm.select_one(".otel-kind").get_text() == "client"
    # The waterfall: the tool call starts 5 ms into a 100 ms trace and lasts 30 ms.
    bar = rows[1].select_one("rect.wf-bar")
    assert (float(bar["x"]), float(bar["width"])) == (5.0, 30.0)
    assert rows[1].select_one("svg.wf")["aria-label"] == "starts at +5 ms, lasts 30 ms"

    # The run page draws the card with the same rows.
    page = soup(client.get(f"/runs/{run_id}", headers=HTML).text)
    card = page.select_one("section#trace")
    assert depths(card.select("tr.span-row")) == depths(rows)
    assert card.select_one(f"a[href='/runs/{run_id}/trace']") is not None
    # Without htmx, the trace is a page of its own with the same rows.
    full = client.get(f"/runs/{run_id}/trace", headers=HTML)
    assert soup(full.text).select_one("header.top nav") is not None
    assert depths(trace_rows(client, run_id, HTML)) == depths(rows)


def test_a_span_detail_shows_everything_in_the_panel_and_on_its_own_page(client):
    run_id = ingest_nested_trace(client)
    llm = next(row for row in trace_rows(client, run_id) if name_of(row) == "chat gpt-4o-mini")
    link = llm.select_one("a.span-name")
    assert link["hx-get"] == link["href"] and link["hx-target"] == "#span-detail"

    partial = client.get(link["href"], headers=HX)
    assert partial.status_code == 200 and "<html" not in partial.text
    page = client.get(link["href"], headers=HTML)
    assert page.status_code == 200 and soup(page.text).select_one("header.top nav") is not None
    for text in (partial.text, page.text):
        detail = soup(text).select_one("article.span-detail")
        attributes = {
            tr.th.get_text(strip=True): tr.td.get_text(strip=True)
            for tr in detail.select("table[aria-label=Attributes] tr")
        }
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.request.temperature"] == "0.25"
        assert attributes["gen_ai.usage.input_tokens"] == "12"
        resource = detail.select_one("table[aria-label='Resource attributes']").get_text()
        assert "service.name" in resource and "trace-test-svc" in resource
        assert "robust-test" in detail.get_text() and "version 1.2.3" in detail.get_text()
        events = detail.select_one(".span-events").get_text()
        assert "gen_ai.content.prompt" in events and "hi <script>x</script>" in events
        assert "<script>x" not in text  # shown as text, never as markup
        log = detail.select_one(".span-logs li").get_text()
        assert "WARN" in log and "app.retry" in log and "retrying after <b>429</b>" in log
        assert "attempt" in log
        parent = detail.select_one(".span-fields a")
        assert parent.get_text() == "invoke_agent helper"

    tool = next(row for row in trace_rows(client, run_id) if name_of(row) == "execute_tool search")
    detail = soup(client.get(tool.select_one("a.span-name")["href"], headers=HX).text)
    assert detail.select_one(".span-error-box").get_text(strip=True) == (
        "✕ error: search backend is down"
    )


def test_the_json_twin_lists_every_field_in_tree_order(client):
    run_id = ingest_nested_trace(client)
    r = client.get(f"/api/runs/{run_id}/spans")
    assert r.status_code == 200, r.text
    spans = r.json()
    assert [(s["name"], s["depth"]) for s in spans] == depths(trace_rows(client, run_id))
    for s in spans:
        assert CONTRACT <= set(s), CONTRACT - set(s)
        assert s["trace_id"] == f"{TRACE:032x}" and s["run_id"] == run_id
    by_name = {s["name"]: s for s in spans}
    llm = by_name["chat gpt-4o-mini"]
    assert llm["span_kind"] == "client" and llm["parent_span_id"] == f"{1:016x}"
    assert llm["attributes"]["gen_ai.request.temperature"] == 0.25  # typed as it arrived
    assert llm["attributes"]["gen_ai.usage.input_tokens"] == 12
    assert llm["events"][0]["name"] == "gen_ai.content.prompt"
    assert llm["events"][0]["attributes"] == {"gen_ai.prompt": "hi <script>x</script>"}
    assert llm["resource"]["service.name"] == "trace-test-svc"
    assert llm["scope"]["name"] == "robust-test" and llm["scope"]["version"] == "1.2.3"
    [log] = llm["logs"]
    assert log["event_name"] == "app.retry" and log["body"] == "retrying after <b>429</b>"
    assert log["attributes"] == {"attempt": 2} and log["severity_text"] == "WARN"
    tool = by_name["execute_tool search"]
    assert tool["status"] == "error" and tool["status_message"] == "search backend is down"
    assert all(s["logs"] == [] for s in spans if s is not llm)

    schema = openapi(client)
    assert_conforms(schema, "get", "/api/runs/{run_id}/spans", spans)
    answer = schema["paths"]["/api/runs/{run_id}/spans"]["get"]["responses"]["200"]
    listed = answer["content"]["application/json"]["schema"]
    assert listed["type"] == "array"
    assert CONTRACT <= set(resolved(schema, listed["items"])["properties"])


def test_the_json_twin_has_the_api_auth_and_404s(client, keys):
    run_id = ingest_nested_trace(client)
    r = client.get(f"/api/runs/{run_id}/spans", headers={"X-API-Key": keys["viewer"]})
    assert r.status_code == 200 and len(r.json()) == 5
    r = client.get(f"/api/runs/{run_id}/spans", headers={"X-API-Key": "not-a-key"})
    assert r.status_code == 401
    r = client.get("/api/runs/no-such-run/spans")
    assert r.status_code == 404 and r.json()["detail"] == "run 'no-such-run' not found"


def test_unknown_runs_and_spans_are_404_pages_with_a_message(client):
    run_id = ingest_nested_trace(client)
    for path, message in [
        ("/runs/no-such-run/trace", "run 'no-such-run' not found"),
        ("/runs/no-such-run/spans/abc", "run 'no-such-run' not found"),
        (f"/runs/{run_id}/spans/{'0' * 16}", f"span '{'0' * 16}' not found in run '{run_id}'"),
        (
            f"/runs/{run_id}/spans/{quote('<i>x', safe='')}",
            f"span '<i>x' not found in run '{run_id}'",
        ),
    ]:
        for headers in (HTML, HX):
            r = client.get(path, headers=headers)
            assert r.status_code == 404, (path, r.text[:500])
            assert soup(r.text).select_one(".error-page p").get_text() == message
            assert "<i>x" not in r.text


def test_a_native_run_shows_its_agent_model_and_tool_spans(client, fake_mistral):
    fake_mistral.add(
        Reply(
            text="Let me say it.",
            tool_calls=[{"name": "elevenlabs_speak", "arguments": {"text": "Paris"}}],
            usage=(30, 8),
        ),
        Reply(text="Paris.", usage=(45, 2)),
    )
    r = client.post("/api/runs", json={"prompt": "Capital of France?", "model": MISTRAL_MODEL})
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    wait_for_run(client, run_id)

    rows = trace_rows(client, run_id)
    kinds = [row.select_one(".kind").get_text() for row in rows]
    assert kinds[0] == "agent" and int(rows[0]["data-depth"]) == 0
    assert sorted(kinds[1:]) == ["llm", "llm", "tool"]
    assert all(int(row["data-depth"]) >= 1 for row in rows[1:])
    # Children come in the order they ran: model call, tool call, model call.
    assert [k for k in kinds if k != "agent"] == ["llm", "tool", "llm"]
    tool = rows[kinds.index("tool")]
    # No ElevenLabs key in the tests: the tool call fails and says why.
    assert "span-failed" in tool["class"] and "ELEVENLABS_API_KEY" in tool.get_text()
    first_llm = rows[kinds.index("llm")]
    assert "30 in · 8 out" in first_llm.get_text()

    for row in rows:
        href = row.select_one("a.span-name")["href"]
        for headers in (HX, HTML):
            r = client.get(href, headers=headers)
            assert r.status_code == 200, (href, r.text[:500])
        assert soup(client.get(href, headers=HX).text).select_one("article.span-detail")

    spans = client.get(f"/api/runs/{run_id}/spans").json()
    assert [s["kind"] for s in spans] == kinds
    assert [s["depth"] for s in spans] == [int(row["data-depth"]) for row in rows]
    assert all(CONTRACT <= set(s) for s in spans)
    assert_conforms(openapi(client), "get", "/api/runs/{run_id}/spans", spans)


# --- odd rows written straight into the store -------------------------------------------

BIG = "y" * 10_000


def odd_run(store: Any, run_id: str, spans: list[dict[str, Any]]) -> None:
    """A finished run with ``spans`` written as they are."""
    now = time.time()
    store.write_sync(
        create_run, {"id": run_id, "prompt": "odd", "status": "failed", "ended_at": now}
    )
    store.write_sync(lambda db: db["spans"].insert_all({"run_id": run_id, **s} for s in spans))


ODD_SPANS = [
    {
        "span_id": "root",
        "kind": "agent",
        "name": "<script>alert(1)</script>",
        "start_at": 100.0,
        "end_at": 110.0,
        "status": "interrupted",
        "attributes": json.dumps(
            {
                "big": BIG,
                "nested": {"a": [1, {"b": 2}]},
                "html": "<img src=x onerror=alert(1)>",
                "flag": True,
                "nothing": None,
            }
        ),
        "events": json.dumps([{"name": "e1", "at": 101.5, "attributes": {"k": "v"}}, 5, "odd"]),
        "links": json.dumps({"not": "a list"}),
        "resource": json.dumps("just text"),
        "scope": "42",
    },
    {
        "span_id": "corrupt",
        "parent_span_id": "root",
        "kind": "llm",
        "name": "corrupt cells",
        "start_at": 101.0,
        "status": "failed",  # an old row: a run status, no end, no message
        "attributes": "{not json",
        "events": "[1,",
        "links": "]]",
        "resource": "{",
        "scope": "{'py': 'dict'}",
        "input_tokens": 2**63 - 1,
        "cost_usd": 1e308,
    },
    {
        "span_id": "lost",
        "parent_span_id": "never-stored",
        "kind": "tool",
        "name": "orphan",
        "start_at": 102.0,
        "end_at": 103.0,
        "status": "ok",
        "attributes": "[1, 2, 3]",
    },
    {"span_id": None, "name": None, "kind": None, "status": None},
    {
        "span_id": "weird",
        "parent_span_id": "root",
        "kind": "retriever",
        "span_kind": "sideways",
        "name": "odd kind",
        "start_at": "not a number",
        "end_at": 105.0,
        "status": "ok",
    },
    {"span_id": "a", "parent_span_id": "b", "name": "cycle a", "start_at": 104.0},
    {"span_id": "b", "parent_span_id": "a", "name": "cycle b", "start_at": 104.5},
    {"span_id": "x/y", "name": "slash id", "start_at": 106.0, "end_at": 106.0},
    {
        "span_id": '<b>id & "more"',
        "parent_span_id": "root",
        "name": "html id",
        "start_at": 107.0,
        "end_at": 108.0,
        "status": "error",
        "status_message": "<b>bad</b>",
    },
]


def test_odd_rows_still_render(client):
    odd_run(client.app.state.store, "odd-trace", ODD_SPANS)
    for headers in (HX, HTML):
        r = client.get("/runs/odd-trace/trace", headers=headers)
        assert r.status_code == 200, r.text[:2000]
        assert "<script>alert(1)" not in r.text and "<img src=x" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert client.get("/runs/odd-trace", headers=HTML).status_code == 200
    rows = trace_rows(client, "odd-trace")
    assert len(rows) == len(ODD_SPANS)
    tree = depths(rows)
    assert tree[:4] == [
        ("<script>alert(1)</script>", 0),
        ("corrupt cells", 1),
        ("html id", 1),
        ("odd kind", 1),  # no usable start time: last among its siblings
    ]
    assert ("orphan", 0) in tree and ("cycle a", 0) in tree and ("cycle b", 1) in tree
    assert ("—", 0) in tree  # a row with nothing in it
    failed = {name_of(row) for row in rows if "span-failed" in row["class"]}
    assert failed == {"<script>alert(1)</script>", "corrupt cells", "html id"}
    html_id = next(row for row in rows if name_of(row) == "html id")
    assert "✕ <b>bad</b>" in html_id.get_text()
    assert rows[1].select_one(".span-error").get_text(strip=True) == "✕ failed"
    # Never ended, in a run that has: not "running".
    assert rows[1].select("td")[2].get_text(strip=True) == "no end"
    # An id no URL path can carry is shown without a link; the JSON still has it.
    slash = next(row for row in rows if name_of(row) == "slash id")
    assert slash.select_one("a.span-name") is None

    for row in rows:
        link = row.select_one("a.span-name")
        if link is None:
            continue
        for headers in (HX, HTML):
            r = client.get(link["href"], headers=headers)
            assert r.status_code == 200, (link["href"], r.text[:1000])
            assert "<script>alert(1)" not in r.text and "<img src=x" not in r.text

    root = soup(client.get("/runs/odd-trace/spans/root", headers=HX).text)
    cells = {
        tr.th.get_text(strip=True): tr.td for tr in root.select("table[aria-label=Attributes] tr")
    }
    # Long text and nested values are folded, and their summary says what is inside.
    assert cells["big"].details is not None and "10,000 characters" in cells["big"].summary.text
    assert cells["nested"].details is not None and cells["nested"].summary.text == "object, 1 key"
    assert cells["html"].get_text(strip=True) == "<img src=x onerror=alert(1)>"
    assert cells["flag"].get_text() == "true" and cells["nothing"].get_text() == "null"
    assert "e1" in root.select_one(".span-events").get_text()
    assert "(value)" in root.get_text()  # the links cell that was not a list
    assert "just text" in root.get_text()
    [html_link] = [row.select_one("a.span-name") for row in rows if name_of(row) == "html id"]
    assert html_link["href"] == "/runs/odd-trace/spans/%3Cb%3Eid%20%26%20%22more%22"

    r = client.get("/api/runs/odd-trace/spans")
    assert r.status_code == 200, r.text[:2000]
    spans = {s["span_id"]: s for s in r.json()}
    corrupt = spans["corrupt"]
    assert [corrupt[k] for k in ("attributes", "events", "links", "resource", "scope")] == [
        None
    ] * 5
    assert spans["root"]["resource"] == "just text" and spans["root"]["scope"] == 42
    assert spans["root"]["attributes"]["big"] == BIG and spans["lost"]["attributes"] == [1, 2, 3]
    assert spans["x/y"]["depth"] == 0 and spans[None]["name"] is None


def test_a_long_deep_tree_is_capped_with_a_note(client):
    total = MAX_ROWS + 50
    chain = [
        {
            "span_id": f"s{i}",
            "parent_span_id": f"s{i - 1}" if i else None,
            "kind": "tool",
            "name": f"step {i}",
            "start_at": 1000.0 + i,
            "end_at": 1000.5 + i,
            "status": "ok",
        }
        for i in range(total)
    ]
    odd_run(client.app.state.store, "long-trace", chain)
    r = client.get("/runs/long-trace/trace", headers=HX)
    assert r.status_code == 200
    page = soup(r.text)
    rows = page.select("tr.span-row")
    assert len(rows) == MAX_ROWS
    assert int(rows[-1]["data-depth"]) == MAX_ROWS - 1  # nothing recursed
    assert "Showing the first 2,000 of 2,050 spans" in page.select_one("p.note").get_text()
    assert rows[-1].select_one(".deep").get_text() == f"+{MAX_ROWS - 1 - MAX_INDENT}"
    spans = client.get("/api/runs/long-trace/spans").json()
    assert len(spans) == total and spans[-1]["depth"] == total - 1


def test_a_running_span_reaches_to_now_and_a_zero_length_trace_still_draws(client):
    store = client.app.state.store
    started = time.time() - 10
    store.write_sync(create_run, {"id": "live-trace", "prompt": "p", "status": "running"})
    store.write_sync(
        lambda db: db["spans"].insert_all(
            [
                {
                    "run_id": "live-trace",
                    "span_id": "agent",
                    "kind": "agent",
                    "name": "agent run",
                    "start_at": started,
                    "status": "running",
                },
                {
                    "run_id": "live-trace",
                    "span_id": "llm:1",
                    "parent_span_id": "agent",
                    "kind": "llm",
                    "name": "m",
                    "start_at": started,
                    "end_at": started + 1,
                    "status": "ok",
                },
            ]
        )
    )
    rows = trace_rows(client, "live-trace")
    agent, llm = (row.select_one("rect.wf-bar") for row in rows)
    assert float(agent["width"]) == 100.0
    assert rows[0].select("td")[2].get_text(strip=True) == "running"
    assert 5 < float(llm["width"]) < 15  # one second of about ten

    odd_run(
        client.app.state.store,
        "instant-trace",
        [{"span_id": "only", "name": "instant", "start_at": 5.0, "end_at": 5.0, "status": "ok"}],
    )
    [row] = trace_rows(client, "instant-trace")
    bar = row.select_one("rect.wf-bar")
    assert (float(bar["x"]), float(bar["width"])) == (0.0, 100.0)
