"""A request's spans made ready for the writer, on the decoding thread.

``traces_of`` is all the pipeline does off the event loop for a trace
export: the spans as records (``decode.spans_of``), their JSON columns
encoded as they will be stored, and what each says about the agent's step
(``facts``). The writer thread then only writes.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.ingest.decode import SpanRecord, spans_of
from app.ingest.facts import facts_of
from app.store.spans import stored_cell


def with_cells(spans: list[SpanRecord]) -> list[SpanRecord]:
    """``spans`` with their JSON columns encoded as stored, so the writer thread need not.

    A request's spans share their resource and scope objects: each is encoded once.
    """
    shared: dict[int, Any] = {}

    def once(value: Any) -> Any:
        key = id(value)
        if key not in shared:
            shared[key] = stored_cell(value)
        return shared[key]

    for span in spans:
        span.cells = {
            "attributes": stored_cell(span.attributes),
            "events": stored_cell(span.events),
            "links": stored_cell(span.links),
            "resource": once(span.resource),
            "scope": once(span.scope),
        }
    return spans


def traces_of(request: ExportTraceServiceRequest) -> tuple[list[SpanRecord], list[str]]:
    """The valid spans of ``request``, ready for the writer, and why the others were rejected."""
    spans, rejected = spans_of(request)
    for span in with_cells(spans):
        span.facts = facts_of(span)
    return spans, rejected
