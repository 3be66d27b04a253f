"""Fine-tuning: the page (start a job from runs, follow it live, see registered models)
and its JSON API under /api/finetune."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, URLEncodedBody
from litestar.response import Redirect, ServerSentEvent, Template

from app.auth.guards import author, requires_member
from app.core.errors import InputError
from app.core.outbound import errors_about, errors_for, errors_of
from app.finetune.bodies import FineTuneCreate
from app.finetune.context import (
    FineTuneJobDetail,
    FineTuneList,
    FineTuneStarted,
    finetune_context,
    job_detail,
)
from app.finetune.jobs import TERMINAL, get_job
from app.store import Store
from app.store.live import Broker
from app.web.bodies import from_form
from app.web.job_stream import job_stream
from app.web.params import RowId
from app.web.render import render_partial


async def _existing(store: Store, job_id: int) -> dict[str, Any]:
    row = await store.read(get_job, job_id)
    if row is None:
        raise NotFoundException(f"fine-tune job {job_id} not found")
    return row


def _errors(db: Any) -> list[dict[str, Any]]:
    return errors_about(db, "finetune:")


class FineTunePage(Controller):
    path = "/finetune"
    include_in_schema = False

    async def _page(self, store: Store, state: State, status: int = 200, **extra: Any) -> Template:
        listed = await finetune_context(store)
        context = {
            "jobs": listed.jobs,
            "models": listed.models,
            "errors": errors_of(await store.read(_errors)),
            "configured": state.finetunes.configured,
            "nav": "finetune",
            "error": "",
            "values": {},
            **extra,
        }
        return Template("finetune.html", context=context, status_code=status)

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
            await state.finetunes.create(from_form(data, FineTuneCreate), author(request))
        except InputError as exc:
            return await self._page(store, state, status=422, error=str(exc), values=data)
        return Redirect("/finetune", status_code=303)

    @get("/{job_id:int}/events")
    async def events(
        self,
        job_id: RowId,
        store: NamedDependency[Store],
        broker: NamedDependency[Broker],
        jinja: NamedDependency[Environment],
    ) -> ServerSentEvent:
        await _existing(store, job_id)
        return job_stream(
            broker,
            f"finetune:{job_id}",
            "finetune_status",
            lambda: store.read(get_job, job_id),
            TERMINAL,
            lambda row: render_partial(jinja, "finetune_status", job=row, live=True),
        )


class FineTuneAPI(Controller):
    path = "/api/finetune"
    tags = ["fine-tuning"]

    @post(
        "/",
        summary="Build a JSONL from runs, upload it and start a Mistral fine-tuning job",
        guards=[requires_member],
        status_code=202,
    )
    async def create(
        self, request: Request, state: State, data: JSONBody[FineTuneCreate]
    ) -> FineTuneStarted:
        job = await state.finetunes.create(data, author(request))
        return FineTuneStarted(job_id=job["id"], status=job["status"], export_id=job["export_id"])

    @get("/", summary="Fine-tuning jobs and registered models")
    async def index(self, store: NamedDependency[Store]) -> FineTuneList:
        return await finetune_context(store)

    @get("/{job_id:int}", summary="One fine-tuning job, with its recorded errors")
    async def show(self, job_id: RowId, store: NamedDependency[Store]) -> FineTuneJobDetail:
        job = await _existing(store, job_id)
        return job_detail(job, await store.read(errors_for, f"finetune:{job_id}"))
