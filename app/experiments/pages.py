"""Dataset and experiment pages: upload or pick runs, run an experiment, watch, compare.

An experiment page streams progress over SSE: each message re-renders the
progress bar, the summary and the item that changed from SQLite with the
``experiment_progress`` partial, so a late or reconnecting viewer is never
out of date. Forms post like the rest of the studio (CSRF token, 303, or
HX-Redirect for htmx); bad input re-renders the form with a 422.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from jinja2 import Environment
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, URLEncodedBody
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from app.auth.guards import requires_member, who
from app.core.errors import InputError
from app.evals.heuristics import HEURISTICS
from app.evals.judge import METRIC as JUDGE
from app.experiments.api import EXPERIMENT_DEPENDENCIES
from app.experiments.bodies import DatasetCreate, DatasetFromRuns, ExperimentCreate
from app.experiments.context import (
    dataset_detail,
    dataset_list,
    experiment_comparison,
    experiment_detail,
    experiment_list,
    page_view,
)
from app.experiments.datasets import create_dataset, dataset_from_runs, get_dataset, parse_upload
from app.experiments.queries import get_experiment
from app.experiments.runner import Experiments
from app.runs.form import form_context, form_to_input
from app.runs.runner import Runner
from app.store import Store
from app.store.runs import list_runs
from app.web.bodies import from_form
from app.web.htmx import STREAM_END, redirect_to
from app.web.params import QueryId, RowId
from app.web.render import render_partial
from app.web.sse import sse_response


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def evaluators_from_form(form: dict[str, Any]) -> list[dict[str, Any]]:
    """Checked evaluators with their ``<name>.<param>`` fields as params."""
    chosen = []
    for name in _as_list(form.get("evaluators")):
        prefix = f"{name}."
        params = {k[len(prefix) :]: v for k, v in form.items() if k.startswith(prefix) and v != ""}
        chosen.append({"name": name, "params": params})
    return chosen


def config_from_form(form: dict[str, Any]) -> dict[str, Any]:
    data = form_to_input(form)
    return {
        k: data[k]
        for k in ("model", "temperature", "max_tokens", "system_prompt", "tools", "max_rounds")
        if k in data
    }


def experiment_form(form: dict[str, Any]) -> ExperimentCreate:
    """The dataset page's form as the API's body: run settings under ``config``,
    checked evaluators with their ``<name>.<param>`` fields."""
    nested = {"config": config_from_form(form), "evaluators": evaluators_from_form(form)}
    fields: dict[str, Any] = {
        k: form[k] for k in ("dataset_id", "name", "concurrency") if k in form
    }
    return from_form({**fields, **nested}, ExperimentCreate)


def evaluator_specs() -> list[dict[str, Any]]:
    specs = [
        {
            "name": h.name,
            "title": h.title,
            "description": h.description,
            "params": [
                {"name": p.name, "title": p.title, "kind": p.kind.__name__} for p in h.params
            ],
        }
        for h in HEURISTICS.values()
    ]
    specs.append(
        {
            "name": JUDGE,
            "title": "LLM judge",
            "description": "A model grades the answer 1–5 (passes at 4); uses the model "
            "named here, else the default model.",
            "params": (),
        }
    )
    return specs


class ExperimentPagesController(Controller):
    path = "/"
    include_in_schema = False
    dependencies = EXPERIMENT_DEPENDENCIES

    async def _datasets_page(self, store: Store, status: int = 200, **extra: Any) -> Template:
        context = {
            "nav": "datasets",
            "datasets": msgspec.to_builtins(await dataset_list(store))["datasets"],
            "runs": [r for r in await store.read(list_runs, 100, 0) if r["prompt"]],
            "values": {},
            **extra,
        }
        return Template("datasets.html", context=context, status_code=status)

    @get("/datasets")
    async def datasets(self, store: NamedDependency[Store]) -> Template:
        return await self._datasets_page(store)

    @post("/datasets", guards=[requires_member], status_code=303)
    async def upload(
        self,
        request: Request,
        store: NamedDependency[Store],
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response | Template:
        try:
            upload = data.get("file")
            fields = {k: v for k, v in data.items() if isinstance(v, str)}
            filename = ""
            if isinstance(upload, UploadFile) and upload.filename:
                filename = upload.filename
                try:
                    fields["content"] = (await upload.read()).decode("utf-8-sig")
                except UnicodeDecodeError:
                    raise InputError("the file must be UTF-8 text (CSV or JSONL)") from None
            body = from_form(fields, DatasetCreate)
            if body.content is None:
                raise InputError("choose a CSV or JSONL file, or paste its content")
            items = parse_upload(body.content, filename, body.format)
            fmt = "csv" if filename.lower().endswith(".csv") or body.format == "csv" else "jsonl"
            dataset = await store.write(
                create_dataset, body.name, items, fmt, body.description, who(request)
            )
        except InputError as exc:
            values = {k: v for k, v in data.items() if isinstance(v, str)}
            return await self._datasets_page(store, 422, upload_error=str(exc), values=values)
        return redirect_to(request, f"/datasets/{dataset['id']}")

    @post("/datasets/from-runs", guards=[requires_member], status_code=303)
    async def from_runs(
        self, request: Request, store: NamedDependency[Store], data: URLEncodedBody[dict[str, Any]]
    ) -> Response | Template:
        try:
            body = from_form(data, DatasetFromRuns, lists=("run_ids",))
            dataset = await store.write(dataset_from_runs, body.name, body.run_ids, who(request))
        except InputError as exc:
            return await self._datasets_page(store, 422, runs_error=str(exc))
        return redirect_to(request, f"/datasets/{dataset['id']}")

    async def _dataset_page(
        self, store: Store, runner: Runner, dataset_id: int, status: int = 200, **extra: Any
    ) -> Template:
        detail = await dataset_detail(store, dataset_id)
        if detail is None:
            raise NotFoundException(f"dataset {dataset_id} not found")
        dataset = msgspec.to_builtins(detail)
        experiments = msgspec.to_builtins(await experiment_list(store, dataset_id))
        context = {
            "nav": "datasets",
            "dataset": dataset,
            "items": dataset.pop("items"),
            "experiments": experiments["experiments"],
            "evaluators": evaluator_specs(),
            **form_context(runner, extra.pop("values", None), extra.pop("error", "")),
            **extra,
        }
        return Template("dataset.html", context=context, status_code=status)

    @get("/datasets/{dataset_id:int}")
    async def dataset(
        self,
        dataset_id: RowId,
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
    ) -> Template:
        return await self._dataset_page(store, runner, dataset_id)

    @post("/experiments", guards=[requires_member], status_code=303)
    async def start(
        self,
        request: Request,
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        experiments: NamedDependency[Experiments],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response | Template:
        try:
            experiment = await experiments.start(experiment_form(data), created_by=who(request))
        except InputError as exc:
            try:
                dataset_id = int(data.get("dataset_id") or 0)
            except ValueError:
                dataset_id = 0
            if await store.read(get_dataset, dataset_id) is None:
                raise
            return await self._dataset_page(
                store, runner, dataset_id, 422, values=data, error=str(exc)
            )
        return redirect_to(request, f"/experiments/{experiment['id']}")

    @get("/experiments")
    async def experiments_page(self, store: NamedDependency[Store]) -> Template:
        listing = msgspec.to_builtins(await experiment_list(store))
        return Template("experiments.html", context={"nav": "experiments", **listing})

    @get("/experiments/compare")
    async def compare(self, store: NamedDependency[Store], a: QueryId, b: QueryId) -> Template:
        try:
            comparison = await experiment_comparison(store, a, b)
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None
        return Template(
            "compare.html", context={"nav": "experiments", **msgspec.to_builtins(comparison)}
        )

    @get("/experiments/{experiment_id:int}")
    async def experiment(self, experiment_id: RowId, store: NamedDependency[Store]) -> Template:
        detail = await experiment_detail(store, experiment_id)
        if detail is None:
            raise NotFoundException(f"experiment {experiment_id} not found")
        context = page_view(detail)
        siblings = msgspec.to_builtins(await experiment_list(store, detail.dataset_id))
        others = [e for e in siblings["experiments"] if e["id"] != experiment_id]
        return Template(
            "experiment.html", context={"nav": "experiments", "others": others, **context}
        )

    @get("/experiments/{experiment_id:int}/events")
    async def events(
        self,
        experiment_id: RowId,
        store: NamedDependency[Store],
        experiments: NamedDependency[Experiments],
        jinja: NamedDependency[Environment],
    ) -> ServerSentEvent:
        if await store.read(get_experiment, experiment_id) is None:
            raise NotFoundException(f"experiment {experiment_id} not found")

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            async for message in experiments.follow(experiment_id):
                if message is None:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    continue
                detail = await experiment_detail(store, experiment_id, message.get("item_id"))
                if detail is None:
                    continue
                context = page_view(detail)
                html = render_partial(jinja, "experiment_progress", oob=True, **context)
                yield ServerSentEventMessage(data=html, event="experiment_progress")
            yield ServerSentEventMessage(data="end", event=STREAM_END)

        return sse_response(stream())
