"""What the exports page and GET /api/exports show, built once for both.

The Structs here are the declared response types of the exports API (so
/schema/openapi.json describes them); their fields are the table's columns,
so the JSON is the rows as stored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.core.outbound import IntegrationError, errors_about, errors_of
from app.exports.jobs import list_exports
from app.store import Store


class Export(msgspec.Struct):
    """An export job: its options, progress and, once done, its result or error."""

    id: int
    kind: str
    status: str
    progress: float | None
    stage: str | None
    params: Any  # the options it was started with (JSON)
    result: Any  # what it produced (JSON), once it succeeded
    error: str | None
    created_by: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


class ExportStarted(msgspec.Struct):
    export_id: int
    status: str
    export: Export


class ExportList(msgspec.Struct):
    exports: list[Export]
    errors: list[IntegrationError]


def as_export(row: dict[str, Any]) -> Export:
    return msgspec.convert(row, Export)


def _integration_errors(db: Any) -> list[dict[str, Any]]:
    return errors_about(db, "export:", "run:")


async def exports_context(store: Store) -> ExportList:
    """The newest exports and the outbound errors about them (and about runs' W&B logging)."""
    return ExportList(
        exports=msgspec.convert(await store.read(list_exports), list[Export]),
        errors=errors_of(await store.read(_integration_errors)),
    )
