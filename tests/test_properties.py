"""Property-based tests at the edges: no generated request is a 5xx, and every page survives.

Hypothesis generates JSON bodies for the POST routes of our own OpenAPI
schema, and OTLP trace exports (protobuf and JSON) from the real
``opentelemetry.proto`` message types, then mutates them: missing fields,
wrong types, odd text, extreme numbers, random attribute values of every
kind. Each batch goes to one studio under uvicorn; after it, every page and
JSON list answers 200 and the live streams send their first message.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.auth.keys import create_key
from app.core.settings import Settings
from app.main import create_app
from app.store import Store
from tests.conftest import MISTRAL_MODEL, LiveServer, agent_config
from tests.fake_mistral import FakeMistral
from tests.receivers import wait_until
from tests.strategies import (
    EXTREME_INTS,
    JSON_VALUES,
    NUMBERS,
    ODD_TEXT,
    TRACE_REQUESTS,
    encoded,
    mutated,
    otlp_json,
)
from tests.test_sse import SSE, iter_sse

EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Routes that call out (webhooks, Hugging Face, W&B, Mistral fine-tuning): a generated
# URL or host must never be reached from a test.
CALLS_OUT = ("/api/alerts", "/api/exports", "/api/finetune")
JSON_HEADERS = {"Content-Type": "application/json"}


class Studio:
    """One app under uvicorn for the module, with an admin client and ids to aim at."""

    def __init__(self, app: Any, http: httpx.Client) -> None:
        self.app = app
        self.http = http
        self.schema: dict[str, Any] = http.get("/schema/openapi.json").json()
        self.run_ids: list[str] = []
        self.statuses: Counter[tuple[str, int]] = Counter()

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        r = self.http.post(url, **kwargs)
        body = kwargs.get("content", b"")
        assert r.status_code < 500, (url, r.status_code, r.text[:500], body[:500])
        self.statuses[url.split("/")[2], r.status_code // 100] += 1
        return r

    def accepted(self, area: str) -> int:
        """How many generated requests to ``/api/<area>`` or ``/v1/<area>`` got a 2xx."""
        return self.statuses[area, 2]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    mistral = FakeMistral().start()
    data_dir: Path = tmp_path_factory.mktemp("props") / "data"
    config = Settings(data_dir=data_dir, agent_config=agent_config(mistral.url))
    store = Store(config.db_path)
    key = store.write_sync(create_key, "admin-key", "admin")[1]
    store.close()
    app = create_app(config)
    try:
        with (
            LiveServer(app) as server,
            httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as http,
        ):
            studio = Studio(app, http)
            run = studio.post("/api/runs", json={"prompt": "seed", "model": MISTRAL_MODEL})
            studio.run_ids.append(run.json()["run_id"])
            yield studio
    finally:
        mistral.stop()


# --- JSON bodies from the OpenAPI schema ---------------------------------------------------


def from_schema(schema: dict[str, Any], studio: Studio) -> st.SearchStrategy[Any]:
    """Values that fit a JSON schema (the subset Litestar emits), aimed at known ids."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        target = studio.schema["components"]["schemas"][name]
        return st.deferred(lambda: from_schema(target, studio))
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return st.one_of([from_schema(s, studio) for s in schema[combinator]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, studio) for k in kind])
    if kind == "object":
        props = {k: from_schema(v, studio) for k, v in schema.get("properties", {}).items()}
        if not props:
            return st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), studio), max_size=3)
    if kind == "string":
        known = [*studio.run_ids, MISTRAL_MODEL, "score", "thumbs", "exact_match"]
        return st.one_of(st.sampled_from(known), st.sampled_from(known), ODD_TEXT)
    if kind == "integer":
        low, high = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
        return st.one_of(st.integers(low, high), st.integers(1, 3), EXTREME_INTS)
    if kind == "number":
        return st.one_of(st.floats(0, 2), NUMBERS)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON_VALUES


def post_operations(studio: Studio) -> list[tuple[str, dict[str, Any]]]:
    """(path, body schema) of every JSON POST route but OTLP's and those that call out."""
    found = []
    for path, item in studio.schema["paths"].items():
        body = item.get("post", {}).get("requestBody", {}).get("content", {})
        if "application/json" in body and not path.startswith(CALLS_OUT):
            found.append((path, body["application/json"]["schema"]))
    return found


def valid_bodies(studio: Studio) -> dict[str, dict[str, Any]]:
    """One body per route that the app accepts, for Hypothesis to start from and mutate.

    The schema alone rarely yields one: it cannot say "a value or a label".
    """
    run = studio.run_ids[0]
    return {
        "/api/runs": {"prompt": "hi", "model": MISTRAL_MODEL, "session": "props"},
        "/api/evals": {"run_id": run, "metric": "score", "value": 4, "comment": "ok"},
        "/api/evals/run": {"run_id": run, "evaluators": ["exact_match"], "expected": "hi"},
        "/api/datasets": {"name": "props", "items": [{"input": "q", "expected": "a"}]},
        "/api/datasets/from-runs": {"name": "from runs", "run_ids": [run]},
        "/api/experiments": {"dataset_id": 1, "config": {"model": MISTRAL_MODEL}},
        "/api/diffs": {"a": run, "b": run},
        "/api/runs/{run_id}/replay": {"temperature": 0.5},
    }


def _poster(studio: Studio, path: str, schema: dict[str, Any]) -> Any:
    start = st.just(valid_bodies(studio).get(path, {})).map(copy.deepcopy)
    bodies = encoded(mutated(st.one_of(start, from_schema(schema, studio))))

    @EXAMPLES
    @given(body=bodies, run_id=st.sampled_from(studio.run_ids))
    def post(body: bytes, run_id: str) -> None:
        url = path.replace("{run_id}", run_id)
        r = studio.post(url, content=body, headers=JSON_HEADERS)
        if path == "/api/runs" and r.status_code == 201:
            studio.run_ids.append(r.json()["run_id"])

    return post


def test_post_bodies_from_the_schema_never_make_a_5xx(studio: Studio) -> None:
    operations = post_operations(studio)
    assert {"/api/runs", "/api/evals", "/api/runs/{run_id}/replay"} <= {p for p, _ in operations}
    for path, schema in operations:
        _poster(studio, path, schema)()
    # Not only refusals: enough bodies were valid to start runs and score them.
    assert studio.accepted("runs") >= 3 and studio.accepted("evals") >= 3, studio.statuses
    check_every_page(studio)


# --- OTLP trace exports, protobuf and JSON (tests/strategies.py) ---------------------------


def test_otlp_protobuf_exports_never_make_a_5xx(studio: Studio) -> None:
    @settings(EXAMPLES, max_examples=80)
    @given(request=TRACE_REQUESTS)
    def export(request: ExportTraceServiceRequest) -> None:
        studio.post(
            "/v1/traces",
            content=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )

    before = studio.accepted("traces")
    export()
    assert studio.accepted("traces") - before >= 20, studio.statuses  # not only refusals
    check_every_page(studio)


def test_otlp_json_exports_never_make_a_5xx(studio: Studio) -> None:
    @settings(EXAMPLES, max_examples=80)
    @given(body=encoded(mutated(TRACE_REQUESTS.map(otlp_json))))
    def export(body: bytes) -> None:
        studio.post("/v1/traces", content=body, headers=JSON_HEADERS)

    before = studio.accepted("traces")
    export()
    assert studio.accepted("traces") - before >= 10, studio.statuses  # not only refusals
    check_every_page(studio)


# --- After each batch: every page, every list, the live streams ----------------------------

PAGES = ["/", "/runs", "/runs?page=2", "/sessions", "/evals", "/diffs/new", "/experiments"]
PAGES += ["/datasets", "/api/runs", "/api/sessions", "/api/evals", "/api/experiments"]
PAGES += ["/api/datasets", "/api/evals/summary"]
LIVE_FOLLOWED = 25  # newest runs whose event streams are opened after each batch


def check_every_page(studio: Studio) -> None:
    http = studio.http
    runs = http.get("/api/runs", params={"limit": 500}).json()["runs"]
    urls = [*PAGES, *(f"/runs/{r['id']}" for r in runs)]
    urls += [f"/runs/{r['id']}/memory" for r in runs[:LIVE_FOLLOWED]]
    if len(runs) >= 2:
        urls.append(f"/diffs/new?a={runs[0]['id']}&b={runs[-1]['id']}")
    experiments = http.get("/api/experiments").json()["experiments"]
    urls += [f"/experiments/{x['id']}" for x in experiments]
    by_dataset: dict[int, list[int]] = {}
    for x in experiments:
        by_dataset.setdefault(x["dataset_id"], []).append(x["id"])
    urls += [f"/experiments/compare?a={ids[0]}&b={ids[-1]}" for ids in by_dataset.values()]
    urls += [f"/sessions/{s['id']}" for s in http.get("/api/sessions").json()["sessions"][:20]]
    for url in urls:
        r = http.get(url, headers={"Accept": "text/html"})
        assert r.status_code == 200, (url, r.status_code, r.text[:1000])
    for run in runs[:LIVE_FOLLOWED]:
        if run["last_seq"]:  # stored events come at once, without waiting for a keep-alive
            for url in (f"/runs/{run['id']}/events", f"/api/runs/{run['id']}/events"):
                first = _first_message(http, url)
                assert "render-error" not in first.data, (url, first)
    _check_live_lists(studio)


def _first_message(http: httpx.Client, url: str) -> SSE:
    with http.stream("GET", url, timeout=httpx.Timeout(10.0)) as response:
        assert response.status_code == 200, url
        return next(iter_sse(response))


def _check_live_lists(studio: Studio) -> None:
    """Both live lists announce the next run, an OTLP one with no prompt."""
    app = studio.app
    others = app.state.broker.subscriber_count("*")
    trace = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": f"{time.time_ns():032x}",
                                "spanId": "ab" * 8,
                                "name": "chat after a batch",
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                            }
                        ]
                    }
                ]
            }
        ]
    }
    with (
        studio.http.stream("GET", "/runs/live") as full,
        studio.http.stream("GET", "/runs/live?compact=true") as compact,
    ):
        wait_until(
            lambda: app.state.broker.subscriber_count("*") >= others + 2,
            10,
            "the live lists to subscribe",
        )
        studio.post("/v1/traces", json=trace)
        for stream in (full, compact):
            first = next(e for e in iter_sse(stream) if e.event != "run_list")
            assert first.event == "run_new" and "render-error" not in first.data, first
