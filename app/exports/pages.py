"""Exports: the page (start one, watch its progress live) and its JSON API under /api/exports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, URLEncodedBody
from litestar.response import File, Redirect, ServerSentEvent, Template

from app.auth.guards import author, requires_member
from app.core.errors import InputError
from app.exports.bodies import KINDS, ExportCreate
from app.exports.context import Export, ExportList, ExportStarted, as_export, exports_context
from app.exports.huggingface import ExportError
from app.exports.jobs import TERMINAL, ExportJobs, get_export
from app.store import Store
from app.store.live import Broker
from app.web.bodies import from_form
from app.web.job_stream import job_stream
from app.web.params import RowId
from app.web.render import render_partial


async def _existing(store: Store, export_id: int) -> dict[str, Any]:
    row = await store.read(get_export, export_id)
    if row is None:
        raise NotFoundException(f"export {export_id} not found")
    return row


async def _progress(
    store: Store,
    broker: Broker,
    export_id: int,
    render: Callable[[dict[str, Any]], str] | None = None,
) -> ServerSentEvent:
    """An export's progress as it happens: rendered for the page, JSON for the API."""
    await _existing(store, export_id)
    return job_stream(
        broker,
        f"export:{export_id}",
        "export_progress",
        lambda: store.read(get_export, export_id),
        TERMINAL,
        render,
    )


async def _start(exports: ExportJobs, body: ExportCreate, who: str) -> dict[str, Any]:
    try:
        return await exports.create(body, who)
    except ExportError as exc:  # the repo to push to (it may come from the settings)
        raise InputError(str(exc)) from exc


class ExportsPage(Controller):
    path = "/exports"
    include_in_schema = False

    async def _page(self, store: Store, state: State, status: int = 200, **extra: Any) -> Template:
        settings = state.exports.settings
        listed = await exports_context(store)
        context = {
            "exports": listed.exports,
            "errors": listed.errors,
            "kinds": KINDS,
            "nav": "exports",
            "error": "",
            "values": {},
            "hf_repo": settings.hf_repo,
            "wandb_project": settings.wandb_project,
            "wandb_mode": settings.resolved_wandb_mode,
            **extra,
        }
        return Template("exports.html", context=context, status_code=status)

    @get("/")
    async def index(self, store: NamedDependency[Store], state: State) -> Template:
        return await self._page(store, state)

    @post("/", guards=[requires_member], status_code=303)
    async def create(
        self,
        request: Request,
        store: NamedDependency[Store],
        state: State,
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response | Template:
        try:
            await _start(state.exports, from_form(data, ExportCreate), author(request))
        except InputError as exc:
            return await self._page(store, state, status=422, error=str(exc), values=data)
        return Redirect("/exports", status_code=303)

    @get("/{export_id:int}/events")
    async def events(
        self,
        export_id: RowId,
        store: NamedDependency[Store],
        broker: NamedDependency[Broker],
        jinja: NamedDependency[Environment],
    ) -> ServerSentEvent:
        return await _progress(
            store,
            broker,
            export_id,
            lambda row: render_partial(jinja, "export_progress", export=row, live=True),
        )

    @get("/{export_id:int}/file", guards=[requires_member])
    async def download(self, export_id: RowId, store: NamedDependency[Store]) -> File:
        return _file(await _existing(store, export_id))


def _file(export: dict[str, Any]) -> File:
    path = Path((export.get("result") or {}).get("path") or "")
    if export["kind"] != "finetune_jsonl" or export["status"] != "succeeded" or not path.is_file():
        raise NotFoundException("this export has no file to download")
    return File(path, filename=f"finetune-{export['id']}.jsonl", media_type="application/jsonl")


class ExportsAPI(Controller):
    path = "/api/exports"
    tags = ["exports"]

    @post(
        "/",
        summary="Start an export: huggingface, wandb or finetune_jsonl",
        guards=[requires_member],
        status_code=202,
    )
    async def create(
        self, request: Request, state: State, data: JSONBody[ExportCreate]
    ) -> ExportStarted:
        row = await _start(state.exports, data, author(request))
        return ExportStarted(export_id=row["id"], status=row["status"], export=as_export(row))

    @get("/", summary="Exports, newest first, with the errors of their outbound calls")
    async def index(self, store: NamedDependency[Store]) -> ExportList:
        return await exports_context(store)

    @get("/{export_id:int}", summary="One export: status, progress, result, error")
    async def show(self, export_id: RowId, store: NamedDependency[Store]) -> Export:
        return as_export(await _existing(store, export_id))

    @get("/{export_id:int}/events", summary="Server-sent progress of an export")
    async def events(
        self, export_id: RowId, store: NamedDependency[Store], broker: NamedDependency[Broker]
    ) -> ServerSentEvent:
        return await _progress(store, broker, export_id)

    @get(
        "/{export_id:int}/file",
        summary="The fine-tuning JSONL of a finished export",
        guards=[requires_member],
    )
    async def download(self, export_id: RowId, store: NamedDependency[Store]) -> File:
        return _file(await _existing(store, export_id))
