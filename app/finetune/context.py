"""What the fine-tuning page and GET /api/finetune show, built once for both.

The Structs are the declared response types of the fine-tuning API; their
fields are the tables' columns, so the JSON is the rows as stored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.core.outbound import IntegrationError
from app.finetune.jobs import list_jobs, registered_models
from app.store import Store


class FineTuneJob(msgspec.Struct):
    """A fine-tuning job: its training file, the Mistral job, and the model it made."""

    id: int
    export_id: int | None  # the export that builds the training file
    status: str
    base_model: str
    file_path: str | None
    mistral_file_id: str | None
    mistral_job_id: str | None
    fine_tuned_model: str | None
    hyperparameters: Any  # JSON
    detail: Any  # the provider's last status payload (JSON)
    error: str | None
    created_by: str | None
    created_at: float
    updated_at: float | None
    finished_at: float | None


class FineTuneJobDetail(FineTuneJob):
    errors: list[IntegrationError]


class RegisteredModel(msgspec.Struct):
    """A model runs can be started or replayed on beyond those in the agent config."""

    name: str
    provider: str | None
    base_model: str | None
    finetune_job_id: int | None
    created_at: float | None


class FineTuneStarted(msgspec.Struct):
    job_id: int
    status: str
    export_id: int | None


class FineTuneList(msgspec.Struct):
    jobs: list[FineTuneJob]
    models: list[RegisteredModel]


def job_detail(job: dict[str, Any], errors: list[dict[str, Any]]) -> FineTuneJobDetail:
    return msgspec.convert({**job, "errors": errors}, FineTuneJobDetail)


async def finetune_context(store: Store) -> FineTuneList:
    """The newest jobs and the models they registered."""
    return FineTuneList(
        jobs=msgspec.convert(await store.read(list_jobs), list[FineTuneJob]),
        models=msgspec.convert(await store.read(registered_models), list[RegisteredModel]),
    )
