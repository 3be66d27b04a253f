"""Pins: keep a run, or the run an evaluation scores, whatever ``AGENTOP_RETENTION_DAYS`` says.

A pin is a date on the row (``runs.pinned_at``, ``evaluations.pinned_at``),
set from the run page's pin button or the evals list, or over the API:
``POST``/``DELETE /api/runs/{id}/pin`` and ``/api/evals/{id}/pin`` (member
or admin). The page forms post to ``/runs/{id}/pin`` and ``/unpin`` (HTML
forms cannot DELETE): htmx swaps the button, a plain form gets a 303 back.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlite_utils import Database

from app.auth.guards import requires_member
from app.store import Store
from app.web.htmx import is_htmx
from app.web.params import RowId

# --- store functions -------------------------------------------------------------------


def pin_run(db: Database, run_id: str, at: float | None) -> dict[str, Any] | None:
    """Pin a run at ``at`` (a pinned run keeps its first date), or unpin it (None).
    The run's id and pin date after, or None if there is no such run."""
    db.execute(
        "UPDATE runs SET pinned_at = CASE WHEN ? IS NULL THEN NULL"
        " ELSE coalesce(pinned_at, ?) END WHERE id = ?",
        [at, at, run_id],
    )
    row = db.execute("SELECT id, pinned_at FROM runs WHERE id = ?", [run_id]).fetchone()
    return {"id": row[0], "pinned_at": row[1]} if row else None


def pin_evaluation(db: Database, eval_id: int, at: float | None) -> dict[str, Any] | None:
    """As :func:`pin_run`, for an evaluation (its run is kept while it is pinned)."""
    db.execute(
        "UPDATE evaluations SET pinned_at = CASE WHEN ? IS NULL THEN NULL"
        " ELSE coalesce(pinned_at, ?) END WHERE id = ?",
        [at, at, eval_id],
    )
    row = db.execute(
        "SELECT id, run_id, pinned_at FROM evaluations WHERE id = ?", [eval_id]
    ).fetchone()
    return {"id": row[0], "run_id": row[1], "pinned_at": row[2]} if row else None


async def set_run_pin(store: Store, run_id: str, pinned: bool) -> dict[str, Any]:
    row = await store.write(pin_run, run_id, time.time() if pinned else None)
    if row is None:
        raise NotFoundException(f"run {run_id!r} not found")
    return row


async def set_evaluation_pin(store: Store, eval_id: int, pinned: bool) -> dict[str, Any]:
    row = await store.write(pin_evaluation, eval_id, time.time() if pinned else None)
    if row is None:
        raise NotFoundException(f"evaluation {eval_id} not found")
    return row


# --- JSON API ----------------------------------------------------------------------------


class RunPin(msgspec.Struct):
    """A run's pin: ``pinned_at`` is when it was pinned (null when it is not)."""

    run_id: str
    pinned: bool
    pinned_at: float | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> RunPin:
        return cls(
            run_id=row["id"], pinned=row["pinned_at"] is not None, pinned_at=row["pinned_at"]
        )


class EvaluationPin(msgspec.Struct):
    """An evaluation's pin; while it is pinned, ``run_id`` is kept by retention."""

    id: int
    run_id: str
    pinned: bool
    pinned_at: float | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> EvaluationPin:
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            pinned=row["pinned_at"] is not None,
            pinned_at=row["pinned_at"],
        )


class PinsAPI(Controller):
    path = "/api"
    tags = ["pins"]
    guards = [requires_member]

    @post("/runs/{run_id:str}/pin", summary="Pin a run: retention keeps it", status_code=200)
    async def pin(self, run_id: FromPath[str], store: NamedDependency[Store]) -> RunPin:
        return RunPin.of(await set_run_pin(store, run_id, True))

    @delete("/runs/{run_id:str}/pin", summary="Unpin a run", status_code=200)
    async def unpin(self, run_id: FromPath[str], store: NamedDependency[Store]) -> RunPin:
        return RunPin.of(await set_run_pin(store, run_id, False))

    @post(
        "/evals/{eval_id:int}/pin",
        summary="Pin an evaluation: retention keeps its run",
        status_code=200,
    )
    async def pin_eval(self, eval_id: RowId, store: NamedDependency[Store]) -> EvaluationPin:
        return EvaluationPin.of(await set_evaluation_pin(store, eval_id, True))

    @delete("/evals/{eval_id:int}/pin", summary="Unpin an evaluation", status_code=200)
    async def unpin_eval(self, eval_id: RowId, store: NamedDependency[Store]) -> EvaluationPin:
        return EvaluationPin.of(await set_evaluation_pin(store, eval_id, False))


# --- pages -------------------------------------------------------------------------------


class PinPages(Controller):
    path = "/"
    include_in_schema = False
    guards = [requires_member]

    async def _run(self, request: Request, store: Store, run_id: str, pinned: bool) -> Response:
        row = await set_run_pin(store, run_id, pinned)
        if is_htmx(request):
            return Template("partials/run_pin.html", context={"run": row})
        return Redirect(f"/runs/{run_id}", status_code=303)

    async def _evaluation(
        self, request: Request, store: Store, eval_id: int, pinned: bool
    ) -> Response:
        row = await set_evaluation_pin(store, eval_id, pinned)
        if is_htmx(request):
            return Template("partials/eval_pin.html", context={"e": row})
        return Redirect(f"/evals#eval-{eval_id}", status_code=303)

    @post("/runs/{run_id:str}/pin", status_code=200)
    async def pin(
        self, request: Request, run_id: FromPath[str], store: NamedDependency[Store]
    ) -> Response:
        return await self._run(request, store, run_id, True)

    @post("/runs/{run_id:str}/unpin", status_code=200)
    async def unpin(
        self, request: Request, run_id: FromPath[str], store: NamedDependency[Store]
    ) -> Response:
        return await self._run(request, store, run_id, False)

    @post("/evals/{eval_id:int}/pin", status_code=200)
    async def pin_eval(
        self, request: Request, eval_id: RowId, store: NamedDependency[Store]
    ) -> Response:
        return await self._evaluation(request, store, eval_id, True)

    @post("/evals/{eval_id:int}/unpin", status_code=200)
    async def unpin_eval(
        self, request: Request, eval_id: RowId, store: NamedDependency[Store]
    ) -> Response:
        return await self._evaluation(request, store, eval_id, False)
