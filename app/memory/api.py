"""JSON API of memory snapshots: ``GET /api/runs/{id}/memory``."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.memory.context import RunMemory, run_memory
from app.store import Store


class MemoryAPI(Controller):
    path = "/api/runs/{run_id:str}/memory"
    tags = ["runs"]

    @get("/", summary="A run's memory snapshots, each with what changed since the previous")
    async def snapshots(self, run_id: FromPath[str], store: NamedDependency[Store]) -> RunMemory:
        return await run_memory(store, run_id)
