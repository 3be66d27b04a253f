"""A diff as ``/diffs/{id}`` shows it and ``GET /api/diffs/{id}`` returns it, read once for both.

Opening either fills a pending diff whose runs have both ended
(``ensure_diff``), so the page and the API never disagree about its status.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

from litestar.exceptions import NotFoundException

from app.replay.replays import ensure_diff
from app.store import Store


class DiffRow(TypedDict):
    """A row of ``diffs``: ``status`` is ``pending`` until both runs have ended,
    then ``ready`` with the comparison in ``data`` (free-form)."""

    id: str
    run_a: str
    run_b: str
    kind: str
    status: str
    overrides: dict[str, Any] | None
    data: dict[str, Any] | None
    identical: bool | None
    similarity: float | None
    created_at: float
    computed_at: float | None


async def diff_or_404(store: Store, diff_id: str) -> DiffRow:
    diff = await ensure_diff(store, diff_id)
    if diff is None:
        raise NotFoundException(f"diff {diff_id!r} not found")
    return cast(DiffRow, diff)
