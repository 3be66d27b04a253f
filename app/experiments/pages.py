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

from jinja2 import Environment
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, URLEncodedBody
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from app.auth.guards import requires_member, who
from app.evals.api import EXPERIMENT_DEPENDENCIES
from app.evals.heuristics import HEURISTICS
from app.evals.judge import METRIC as JUDGE
from app.experiments.datasets import (
    check_name,
    create_dataset,
    dataset_from_runs,
    dataset_items,
    get_dataset,
    list_datasets,
    parse_upload,
)
from app.experiments.queries import (
    compare_experiments,
    experiment_items,
    get_experiment,
    list_experiments,
    metric_summary,
)
from app.experiments.runner import Experiments
from app.runs.pages import form_context, form_to_input, redirect_to
from app.runs.runner import InputError, Runner
from app.store import Store
from app.store.runs import list_runs
from app.web.params import QueryId, RowId
from app.web.render import render_partial

STREAM_END = "stream_end"


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


async def _progress_context(store: Store, experiment_id: int, item_id: int | None) -> dict:
    experiment = await store.read(get_experiment, experiment_id)
    items = await store.read(experiment_items, experiment_id, item_id)
    return {
        "experiment": experiment,
        "items": items,
        "metrics": await store.read(metric_summary, experiment_id),
    }


class ExperimentPagesController(Controller):
    path = "/"
    include_in_schema = False
    dependencies = EXPERIMENT_DEPENDENCIES

    async def _datasets_page(self, store: Store, status: int = 200, **extra: Any) -> Template:
        context = {
            "nav": "datasets",
            "datasets": await store.read(list_datasets),
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
            name = check_name(data.get("name"))
            upload = data.get("file")
            text = str(data.get("content") or "")
            filename = ""
            if isinstance(upload, UploadFile) and upload.filename:
                filename = upload.filename
                try:
                    text = (await upload.read()).decode("utf-8-sig")
                except UnicodeDecodeError:
                    raise InputError("the file must be UTF-8 text (CSV or JSONL)") from None
            if not text.strip():
                raise InputError("choose a CSV or JSONL file, or paste its content")
            items = parse_upload(text, filename, str(data.get("format") or "") or None)
            fmt = (
                "csv"
                if filename.lower().endswith(".csv") or data.get("format") == "csv"
                else "jsonl"
            )
            dataset = await store.write(
                create_dataset, name, items, fmt, (data.get("description") or None), who(request)
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
            dataset = await store.write(
                dataset_from_runs,
                check_name(data.get("name")),
                _as_list(data.get("run_ids")),
                who(request),
            )
        except InputError as exc:
            return await self._datasets_page(store, 422, runs_error=str(exc))
        return redirect_to(request, f"/datasets/{dataset['id']}")

    async def _dataset_page(
        self, store: Store, runner: Runner, dataset_id: int, status: int = 200, **extra: Any
    ) -> Template:
        dataset = await store.read(get_dataset, dataset_id)
        if dataset is None:
            raise NotFoundException(f"dataset {dataset_id} not found")
        context = {
            "nav": "datasets",
            "dataset": dataset,
            "items": await store.read(dataset_items, dataset_id),
            "experiments": await store.read(list_experiments, dataset_id),
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
            experiment = await experiments.start(
                data.get("dataset_id"),
                config_from_form(data),
                evaluators_from_form(data),
                data.get("name"),
                data.get("concurrency"),
                created_by=who(request),
            )
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
        return Template(
            "experiments.html",
            context={"nav": "experiments", "experiments": await store.read(list_experiments)},
        )

    @get("/experiments/compare")
    async def compare(self, store: NamedDependency[Store], a: QueryId, b: QueryId) -> Template:
        try:
            comparison = await store.read(compare_experiments, a, b)
        except LookupError as exc:
            raise NotFoundException(str(exc)) from None
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return Template("compare.html", context={"nav": "experiments", **comparison})

    @get("/experiments/{experiment_id:int}")
    async def experiment(self, experiment_id: RowId, store: NamedDependency[Store]) -> Template:
        context = await _progress_context(store, experiment_id, None)
        if context["experiment"] is None:
            raise NotFoundException(f"experiment {experiment_id} not found")
        others = [
            e
            for e in await store.read(list_experiments, context["experiment"]["dataset_id"])
            if e["id"] != experiment_id
        ]
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
                context = await _progress_context(store, experiment_id, message.get("item_id"))
                html = render_partial(jinja, "experiment_progress", oob=True, **context)
                yield ServerSentEventMessage(data=html, event="experiment_progress")
            yield ServerSentEventMessage(data="end", event=STREAM_END)

        return ServerSentEvent(
            stream(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
