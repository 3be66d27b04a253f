"""JSON API of traces: ``GET /api/runs/{id}/spans``, the twin of the trace card."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.store import Store
from app.traces.context import TraceSpan, run_trace


class TracesAPI(Controller):
    path = "/api/runs/{run_id:str}/spans"
    tags = ["runs"]

    @get(
        "/",
        summary="A run's spans in tree order (depth first), each whole, with its depth and logs",
    )
    async def spans(self, run_id: FromPath[str], store: NamedDependency[Store]) -> list[TraceSpan]:
        return (await run_trace(store, run_id)).spans
