"""The fine-tune loop: JSONL from runs → Mistral file → fine-tuning job → a model to run on.

``FineTunes.create`` records a job, builds the training JSONL through an
export (so its progress shows like any export), uploads it with the
``mistralai`` SDK (``files.upload``, purpose ``fine-tune``) and creates the
job. The installed SDK (3.7) has no ``fine_tuning.jobs`` client any more, so
when it is missing the job is created and read with plain HTTP calls to the
same ``/v1/fine_tuning/jobs`` API, same server URL and key; an SDK that has
the client is used as is. A tracker then polls the job (Mistral offers no
push) until it ends; on success the fine-tuned model is stored in
``registered_models`` and offered by the runner, so runs can be started and
replayed on it. Every call retries with backoff and records failed attempts
under ``finetune:<id>``; each status change is published live.

A job is owned by the serving process that tracks it (the same owner as its
export): with several replicas one tracks it, and when that one dies another
takes it over (``adopt``, at start and from the periodic sweep).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
from sqlite_utils import Database

from agents.config import MistralConfig
from app.core.background import TaskSet
from app.core.errors import InputError
from app.core.integration_settings import IntegrationSettings
from app.core.outbound import PermanentError, call_with_retry, describe, store_recorder
from app.exports.jobs import ExportJobs, get_export
from app.finetune.bodies import FineTuneCreate
from app.store.live import Broker, LiveEvent
from app.store.processes import claim, live_peers, orphaned_jobs
from app.store.rows import decode_json

log = logging.getLogger(__name__)
DEFAULT_SERVER = "https://api.mistral.ai"
TERMINAL = ("succeeded", "failed", "cancelled")
# Every status of a job not yet ended (ours before Mistral has it, then Mistral's mapped).
UNFINISHED = ("preparing", "uploading", "queued", "running")
STATUS = {  # Mistral job status → ours
    "QUEUED": "queued",
    "VALIDATING": "queued",
    "VALIDATED": "queued",
    "STARTED": "running",
    "RUNNING": "running",
    "SUCCESS": "succeeded",
    "FAILED": "failed",
    "FAILED_VALIDATION": "failed",
    "CANCELLED": "cancelled",
    "CANCELLATION_REQUESTED": "running",
}


# --- rows -----------------------------------------------------------------------


def _decode(row: Any) -> dict[str, Any]:
    return decode_json(row, "hyperparameters", "detail")


def get_job(db: Database, job_id: int) -> dict[str, Any] | None:
    row = db.execute("select * from finetune_jobs where id = ?", [job_id]).fetchone()
    return _decode(row) if row else None


def list_jobs(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    rows = db.execute(
        "select * from finetune_jobs order by created_at desc, id desc limit ?", [limit]
    )
    return [_decode(r) for r in rows.fetchall()]


def update_job(db: Database, job_id: int, **values: Any) -> dict[str, Any]:
    for key in ("hyperparameters", "detail"):
        if key in values and not isinstance(values[key], str):
            values[key] = json.dumps(values[key], default=str)
    db.table("finetune_jobs").update(job_id, {**values, "updated_at": time.time()})
    # update() raises NotFoundError for a missing id, so the row exists here.
    job = get_job(db, job_id)
    assert job is not None
    return job


def register_model(db: Database, name: str, base_model: str, job_id: int) -> None:
    db.table("registered_models").upsert(
        {
            "name": name,
            "provider": "mistral",
            "base_model": base_model,
            "finetune_job_id": job_id,
            "created_at": time.time(),
        },
        pk="name",
    )


def registered_models(db: Database) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.execute("select * from registered_models order by created_at").fetchall()
    ]


# --- the Mistral calls ----------------------------------------------------------


class MistralFineTuning:
    """Files through the SDK; jobs through the SDK when it has them, else the same REST API."""

    def __init__(self, config: MistralConfig, settings: IntegrationSettings) -> None:
        from mistralai.client import Mistral

        self.server = (config.server_url or DEFAULT_SERVER).rstrip("/")
        self.key = config.api_key
        self.timeout = settings.http_timeout_s
        # No SDK retry config: tenacity retries each call once, and records every failure.
        self.client = Mistral(
            api_key=config.api_key,
            server_url=config.server_url or None,
            timeout_ms=int(settings.http_timeout_s * 1000),
        )
        self.sdk_jobs = getattr(getattr(self.client, "fine_tuning", None), "jobs", None)

    def upload(self, path: Path) -> str:
        uploaded = self.client.files.upload(
            file={"file_name": path.name, "content": path.read_bytes()}, purpose="fine-tune"
        )
        return uploaded.id

    def _http(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.request(
            method,
            f"{self.server}{path}",
            json=body,
            timeout=self.timeout,
            headers={"Authorization": f"Bearer {self.key}"},
        )
        if response.status_code in (400, 401, 403, 404, 422):
            raise PermanentError(f"Mistral {response.status_code}: {response.text[:500]}")
        response.raise_for_status()
        return response.json()

    def create_job(
        self, file_id: str, model: str, hyperparameters: dict[str, Any], suffix: str
    ) -> dict[str, Any]:
        if self.sdk_jobs is not None:
            job = self.sdk_jobs.create(
                model=model,
                training_files=[{"file_id": file_id, "weight": 1}],
                hyperparameters=hyperparameters,
                suffix=suffix,
                auto_start=True,
            )
            return job.model_dump()
        return self._http(
            "POST",
            "/v1/fine_tuning/jobs",
            {
                "model": model,
                "training_files": [{"file_id": file_id, "weight": 1}],
                "hyperparameters": hyperparameters,
                "suffix": suffix,
                "auto_start": True,
            },
        )

    def get_job(self, job_id: str) -> dict[str, Any]:
        if self.sdk_jobs is not None:
            return self.sdk_jobs.get(job_id=job_id).model_dump()
        return self._http("GET", f"/v1/fine_tuning/jobs/{job_id}")


# --- the loop -------------------------------------------------------------------


class FineTunes:
    def __init__(
        self,
        store: Any,
        broker: Broker,
        settings: IntegrationSettings,
        mistral: MistralConfig,
        data_dir: Path,
        runner: Any,
        exports: ExportJobs,
    ) -> None:
        self.store, self.broker, self.settings = store, broker, settings
        self.mistral, self.data_dir, self.runner, self.exports = mistral, data_dir, runner, exports
        self.tasks: TaskSet[int] = TaskSet()
        self._seq: dict[int, int] = {}
        self.record = store_recorder(store)

    @property
    def configured(self) -> bool:
        return bool(self.mistral.api_key)

    async def start(self) -> None:
        for model in await self.store.read(registered_models):
            self._offer(model["name"])
        owner, lease_s = self.exports.owner, self.exports.lease_s
        # Jobs with no owner only when no other replica may be tracking them.
        alone = owner is None or not await self.store.read(live_peers, owner, time.time(), lease_s)
        await self.adopt(unowned=alone)

    async def adopt(self, unowned: bool = False) -> list[int]:
        """Take over the unfinished jobs whose server is gone; return their ids."""
        owner, lease_s = self.exports.owner, self.exports.lease_s

        def take_over(db: Database) -> list[int]:
            ids = orphaned_jobs(db, "finetune_jobs", time.time(), lease_s, unowned, UNFINISHED)
            if owner is not None:
                claim(db, "finetune_jobs", ids, owner)
            return ids

        ids = await self.store.write(take_over)
        for job_id in ids:
            job = await self.store.read(get_job, job_id)
            if job is None or job_id in self.tasks:
                continue
            if job["mistral_job_id"] and job["status"] not in TERMINAL:
                self._spawn(job["id"], self._track(job))  # resume tracking after a restart
            elif not job["mistral_job_id"] and job["status"] not in TERMINAL:
                await self._set(
                    job["id"],
                    status="failed",
                    error="interrupted before the job was created: the server stopped",
                )
        return ids

    def _offer(self, name: str) -> None:
        if name not in self.runner.registered_models:
            self.runner.registered_models.append(name)

    def _spawn(self, job_id: int, coro: Any) -> None:
        self.tasks.spawn(job_id, coro)

    async def _set(self, job_id: int, **values: Any) -> dict[str, Any]:
        row = await self.store.write(update_job, job_id, **values)
        seq = self._seq.get(job_id, 0) + 1
        self._seq[job_id] = seq
        self.broker.publish(LiveEvent(f"finetune:{job_id}", seq, "finetune_status", row))
        return row

    async def create(self, body: FineTuneCreate, created_by: str) -> dict[str, Any]:
        if not self.configured:
            raise InputError(
                "fine-tuning needs MISTRAL_API_KEY (and MISTRAL_SERVER_URL if not api.mistral.ai)"
            )
        options = body.options()
        export = await self.exports.create(body.export(), created_by)
        job = await self.store.write(
            lambda db: (
                db.table("finetune_jobs")
                .insert(
                    {
                        "export_id": export["id"],
                        "status": "preparing",
                        "base_model": options["base_model"],
                        "hyperparameters": json.dumps(options["hyperparameters"]),
                        "created_by": created_by,
                        "created_at": time.time(),
                        "updated_at": time.time(),
                    }
                    | {"owner": self.exports.owner}
                )
                .last_pk
            )
        )
        self._spawn(job, self._launch(job, export["id"], options))
        return await self.store.read(get_job, job)

    def _call(self, job_id: int, action: str, fn: Any) -> Any:
        return call_with_retry(
            fn,
            integration="mistral",
            action=action,
            subject=f"finetune:{job_id}",
            settings=self.settings,
            record=self.record,
        )

    async def _launch(self, job_id: int, export_id: int, options: dict[str, Any]) -> None:

        try:
            await self.exports.wait(export_id, timeout=3600)
            export = await self.store.read(get_export, export_id)
            if export is None or export["status"] != "succeeded":
                raise PermanentError(
                    f"building the training file failed: {(export or {}).get('error')}"
                )
            if not export["result"]["examples"]:
                raise PermanentError(
                    "no usable examples: choose runs with a final answer, or "
                    "give failed runs a corrected answer"
                )
            path = Path(export["result"]["path"])
            await self._set(job_id, status="uploading", file_path=str(path))
            client = await asyncio.to_thread(MistralFineTuning, self.mistral, self.settings)
            file_id = await asyncio.to_thread(
                self._call, job_id, "upload file", lambda: client.upload(path)
            )
            await self._set(job_id, mistral_file_id=file_id)
            created = await asyncio.to_thread(
                self._call,
                job_id,
                "create job",
                lambda: client.create_job(
                    file_id, options["base_model"], options["hyperparameters"], options["suffix"]
                ),
            )
            job = await self._set(
                job_id,
                mistral_job_id=created["id"],
                detail=created,
                status=STATUS.get(str(created.get("status")), "queued"),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded and shown on the page
            await self._set(job_id, status="failed", error=describe(exc), finished_at=time.time())
            return
        await self._track(job)

    async def _track(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        client = await asyncio.to_thread(MistralFineTuning, self.mistral, self.settings)
        while True:
            try:
                remote = await asyncio.to_thread(
                    self._call,
                    job_id,
                    "get job",
                    lambda mid=job["mistral_job_id"]: client.get_job(mid),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep tracking; the error is recorded
                log.warning("fine-tune %s: status check failed: %s", job_id, describe(exc))
                await asyncio.sleep(self.settings.finetune_poll_s * 4)
                continue
            status = STATUS.get(str(remote.get("status")), "running")
            model = remote.get("fine_tuned_model")
            if status == "succeeded" and model:
                await self.store.write(register_model, model, job["base_model"], job_id)
                self._offer(model)
                await self._set(
                    job_id,
                    status=status,
                    detail=remote,
                    fine_tuned_model=model,
                    finished_at=time.time(),
                )
                return
            if status in TERMINAL:
                raw = remote.get("status")
                error = (
                    None
                    if status == "succeeded"
                    else (
                        f"Mistral reports the job {raw}"
                        + (f": {remote['message']}" if remote.get("message") else "")
                    )
                )
                await self._set(
                    job_id,
                    status="failed" if status == "succeeded" else status,
                    detail=remote,
                    finished_at=time.time(),
                    error=error or "the job succeeded without a model name",
                )
                return
            if status != job["status"]:
                job = await self._set(job_id, status=status, detail=remote)
            await asyncio.sleep(self.settings.finetune_poll_s)

    async def wait(self, job_id: int, timeout: float = 60) -> None:
        await self.tasks.wait(job_id, timeout)

    async def stop(self) -> None:
        await self.tasks.cancel_all()
