"""Export jobs: validated, recorded, run in the background, progress streamed live.

An export is a row in ``exports`` (kind, params, status, progress, stage,
result, error). ``ExportJobs.create`` takes a request already checked by its
body (``app.exports.bodies.ExportCreate``), fills in the settings' defaults
(a repo to push to must look like one: a 4xx otherwise), inserts the row and
starts the work on a worker thread; each progress step is written to the
row and then published on the broker under ``export:<id>``, so the exports
page follows it over SSE like a run.
The CLI calls the same ``run_export`` directly and prints the progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from sqlite_utils import Database

from app.core.background import TaskSet
from app.core.integration_settings import IntegrationSettings
from app.core.outbound import describe, store_recorder
from app.exports.bodies import ExportCreate
from app.exports.finetune_jsonl import build_jsonl
from app.exports.huggingface import ExportError, check_repo, push_dataset, write_dataset
from app.exports.wandb_export import log_artifact, sqlite_snapshot, write_run_files
from app.store.live import Broker, LiveEvent
from app.store.processes import (
    INTERRUPTED_ERROR,
    LEASE_S,
    live_peers,
    orphaned_jobs,
    with_owner,
)
from app.store.rows import decode_json

log = logging.getLogger(__name__)
TERMINAL = ("succeeded", "failed")
Progress = Callable[[float, str], None]


def options_of(body: ExportCreate, settings: IntegrationSettings) -> dict[str, Any]:
    """The stored options of a checked export request, with the settings' defaults.

    Only what needs the settings is checked here: the repo to push to may come
    from them.
    """
    if body.kind == "huggingface":
        repo = (body.repo or settings.hf_repo or "").strip()
        push = bool(repo) if body.push is None else body.push
        if push:
            check_repo(repo)
        return {"format": body.format, "repo": repo or None, "push": push}
    if body.kind == "wandb":
        return {"project": (body.project or settings.wandb_project)[:128]}
    return {"run_ids": body.ids(), "failed": body.failed, "below": body.below}


def parse_options(kind: str, data: dict[str, Any], settings: IntegrationSettings) -> dict[str, Any]:
    """Options given as a mapping (the CLI's): checked by the same body, or an ExportError."""
    try:
        body = msgspec.convert({**data, "kind": kind}, ExportCreate, strict=False)
    except msgspec.ValidationError as exc:
        raise ExportError(str(exc)) from None
    return options_of(body, settings)


# --- rows -----------------------------------------------------------------------


def _decode(row: Any) -> dict[str, Any]:
    return decode_json(row, "params", "result")


def insert_export(
    db: Database, kind: str, params: dict[str, Any], created_by: str, owner: str | None = None
) -> dict[str, Any]:
    row = {
        "kind": kind,
        "status": "queued",
        "progress": 0.0,
        "stage": "queued",
        "params": json.dumps(params),
        "created_by": created_by,
        "created_at": time.time(),
    }
    # The serving process that runs it: another replica fails it if that one dies.
    pk = db.table("exports").insert(with_owner(row, owner)).last_pk
    assert pk is not None  # the row was just inserted
    export = get_export(db, pk)
    assert export is not None
    return export


def get_export(db: Database, export_id: int) -> dict[str, Any] | None:
    row = db.execute("select * from exports where id = ?", [export_id]).fetchone()
    return _decode(row) if row else None


def list_exports(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    rows = db.execute("select * from exports order by created_at desc, id desc limit ?", [limit])
    return [_decode(r) for r in rows.fetchall()]


def update_export(db: Database, export_id: int, **values: Any) -> dict[str, Any]:
    if "result" in values:
        values["result"] = json.dumps(values["result"], default=str)
    db.table("exports").update(export_id, values)
    # update() raises NotFoundError for a missing id, so the row exists here.
    export = get_export(db, export_id)
    assert export is not None
    return export


def interrupt_exports(
    db: Database, now: float | None = None, lease_s: float = LEASE_S, unowned: bool = True
) -> list[dict[str, Any]]:
    """Exports whose server is gone (``app.store.processes.orphaned_jobs``) are marked failed.

    Returns their rows as they are now, for live pages.
    """
    now = now or time.time()
    ids = orphaned_jobs(db, "exports", now, lease_s, unowned)
    if not ids:
        return []
    db.execute(
        "update exports set status = 'failed', error = ?,"
        f" finished_at = ? where id in ({', '.join('?' * len(ids))})",
        [INTERRUPTED_ERROR, now, *ids],
    )
    return [row for export_id in ids if (row := get_export(db, export_id)) is not None]


# --- the work -------------------------------------------------------------------


def run_export(
    store: Any,
    export_id: int,
    kind: str,
    params: dict[str, Any],
    settings: IntegrationSettings,
    data_dir: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Do one export (blocking); return its result. Raises on failure."""
    folder = data_dir / "exports" / f"export-{export_id}"
    subject = f"export:{export_id}"
    record = store_recorder(store)
    if kind == "huggingface":
        progress(0.05, "reading runs")
        result = store.read_sync(
            write_dataset, folder, params["format"], params["repo"], progress, settings.repo_url
        )
        if params["push"]:
            progress(0.7, f"pushing to {params['repo']}")
            result["commit_url"] = push_dataset(folder, params["repo"], settings, subject, record)
        return result
    if kind == "wandb":
        if store.url is None:
            progress(0.05, "snapshotting the database")
            sqlite_snapshot(store.path, folder / "agentop.db")
        # On PostgreSQL there is no file to snapshot: the run files hold every run.
        runs = store.read_sync(write_run_files, folder / "runs", progress)
        progress(0.7, "logging the artifact to W&B")
        settings_for = (
            settings
            if params["project"] == settings.wandb_project
            else _with_project(settings, params["project"])
        )
        info = log_artifact(folder, settings_for, data_dir, subject, record, {"runs": runs})
        return {"folder": str(folder), "runs": runs, **info}
    progress(0.05, "selecting runs")
    return store.read_sync(
        build_jsonl,
        folder / "finetune.jsonl",
        params["run_ids"] or None,
        params["failed"],
        params["below"],
        progress,
    )


def _with_project(settings: IntegrationSettings, project: str) -> IntegrationSettings:
    return settings.model_copy(update={"wandb_project": project})


class ExportJobs:
    """Runs exports in the background for the web app, one worker thread each."""

    def __init__(
        self,
        store: Any,
        broker: Broker,
        settings: IntegrationSettings,
        data_dir: Path,
        owner: str | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        self.store = store
        self.broker = broker
        self.settings = settings
        self.data_dir = data_dir
        self.owner = owner  # this serving process (app.store.processes)
        self.lease_s = lease_s
        self.tasks: TaskSet[int] = TaskSet()
        self._seq: dict[int, int] = {}

    async def start(self) -> None:
        now = time.time()
        # Exports with no owner only when no other replica may be running them.
        alone = self.owner is None or not await self.store.read(
            live_peers, self.owner, now, self.lease_s
        )
        interrupted = await self.store.write(interrupt_exports, now, self.lease_s, alone)
        if interrupted:
            log.warning(
                "marked %d export(s) failed: interrupted by the last stop", len(interrupted)
            )

    def publish(self, row: dict[str, Any]) -> None:
        seq = self._seq.get(row["id"], 0) + 1
        self._seq[row["id"]] = seq
        self.broker.publish(LiveEvent(f"export:{row['id']}", seq, "export_progress", row))

    async def create(self, body: ExportCreate, created_by: str) -> dict[str, Any]:
        params = options_of(body, self.settings)
        row = await self.store.write(insert_export, body.kind, params, created_by, self.owner)
        self.tasks.spawn(row["id"], self._run(row))
        return row

    async def _run(self, row: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        export_id = row["id"]

        def progress(fraction: float, stage: str) -> None:
            updated = self.store.write_sync(
                update_export,
                export_id,
                progress=round(min(max(fraction, 0.0), 1.0), 3),
                stage=stage,
            )
            loop.call_soon_threadsafe(self.publish, updated)

        self.publish(
            await self.store.write(
                update_export, export_id, status="running", started_at=time.time(), stage="starting"
            )
        )
        try:
            result = await asyncio.to_thread(
                run_export,
                self.store,
                export_id,
                row["kind"],
                row["params"],
                self.settings,
                self.data_dir,
                progress,
            )
        except Exception as exc:  # noqa: BLE001 - recorded on the row and shown
            log.warning("export %s failed: %s", export_id, describe(exc))
            final = await self.store.write(
                update_export,
                export_id,
                status="failed",
                error=describe(exc),
                finished_at=time.time(),
                stage="failed",
            )
        else:
            final = await self.store.write(
                update_export,
                export_id,
                status="succeeded",
                progress=1.0,
                stage="done",
                result=result,
                finished_at=time.time(),
            )
        self.publish(final)

    async def wait(self, export_id: int, timeout: float = 60) -> None:
        await self.tasks.wait(export_id, timeout)

    async def stop(self) -> None:
        await self.tasks.cancel_all()
