"""Weights & Biases: the studio's data as an artifact, and metrics of each agent run.

The artifact holds a consistent snapshot of the SQLite database, taken with
SQLite's online backup API (readers and the writer carry on meanwhile; the
copy is one point in time), plus one JSON file per run. It is logged with
``wandb`` online when ``WANDB_API_KEY`` is set, else in offline mode into
the data directory (``wandb sync`` uploads it later).

``RunMetricsLogger`` logs one W&B run per finished agent run (tokens, cost,
latency, tool calls, status) when enabled; wandb keeps process-wide state,
so one lock serialises these. wandb comes with the 'wandb' extra: without
it an export fails, and run metrics record an error, naming that extra.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.extras import require
from agents.tools.wandb_log import quiet_wandb
from app.core.integration_settings import IntegrationSettings
from app.core.outbound import Recorder, call_with_retry, store_recorder
from app.exports.records import run_ids, run_records
from app.store.runs import get_run
from app.store.statuses import SUCCEEDED

_WANDB_LOCK = threading.Lock()


def sqlite_snapshot(source: Path, dest: Path) -> Path:
    """Copy the live database to ``dest`` with the backup API: a consistent point in time."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    out = sqlite3.connect(dest)
    try:
        src.backup(out, pages=1024)
    finally:
        out.close()
        src.close()
    return dest


def write_run_files(db: Any, folder: Path, progress: Callable[[float, str], None]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    ids = run_ids(db)
    count = 0
    for record in run_records(db, ids):
        (folder / f"{record['id']}.json").write_text(
            json.dumps(record, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
        count += 1
        if count % 200 == 0:
            progress(0.2 + 0.4 * count / max(1, len(ids)), f"wrote {count} of {len(ids)} runs")
    return count


def _wandb_dir(data_dir: Path) -> Path:
    path = data_dir / "wandb"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_artifact(
    folder: Path,
    settings: IntegrationSettings,
    data_dir: Path,
    subject: str,
    record: Recorder | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Log ``folder`` as a dataset artifact; return the W&B run id, mode and run directory."""
    require("wandb", "wandb")
    quiet_wandb()
    import wandb

    mode = settings.resolved_wandb_mode

    def log() -> dict[str, Any]:
        with _WANDB_LOCK:
            run = wandb.init(
                project=settings.wandb_project,
                entity=settings.wandb_entity or None,
                mode=mode,
                dir=str(_wandb_dir(data_dir)),
                job_type="agentop-export",
                settings=wandb.Settings(silent=True, console="off"),
                reinit="create_new",
            )
            try:
                artifact = wandb.Artifact(
                    "agentop-studio",
                    type="dataset",
                    metadata=metadata,
                    description="AgentOp-Studio database snapshot and runs",
                )
                # Immutable: the export folder is never rewritten, so wandb need not stage a copy.
                artifact.add_dir(str(folder), policy="immutable")
                run.log_artifact(artifact)
                info = {
                    "wandb_run_id": run.id,
                    "mode": mode,
                    "run_dir": str(run.dir),
                    "url": getattr(run, "url", None),
                }
            finally:
                run.finish()
            return info

    return call_with_retry(
        log,
        integration="wandb",
        action="log artifact",
        subject=subject,
        settings=settings,
        record=record,
    )


class RunMetricsLogger:
    """Log each finished agent run's metrics as a W&B run of its own."""

    def __init__(self, store: Any, settings: IntegrationSettings, data_dir: Path) -> None:
        self.store = store
        self.settings = settings
        self.data_dir = data_dir
        self.record = store_recorder(store)

    def log_run(self, run_id: str) -> str | None:
        run = self.store.read_sync(get_run, run_id)
        if run is None:
            return None
        metrics = {
            "input_tokens": run["input_tokens"],
            "output_tokens": run["output_tokens"],
            "cost_usd": run["cost_usd"],
            "extra_cost_usd": run.get("extra_cost_usd") or 0.0,
            "latency_ms": run["latency_ms"] or 0.0,
            "tool_calls": run["tool_calls"],
            "tool_errors": run["tool_errors"],
            "succeeded": int(run["status"] == SUCCEEDED),
        }
        if run.get("usage_unknown_calls"):
            # Unknown usage is not 0 tokens: leave the token metrics out, say why.
            del metrics["input_tokens"], metrics["output_tokens"]
            metrics["usage_unknown_calls"] = run["usage_unknown_calls"]

        def log() -> str:
            # Inside the retried call: a missing extra is recorded like any other failure.
            require("wandb", "wandb")
            quiet_wandb()
            import wandb

            with _WANDB_LOCK:
                w = wandb.init(
                    project=self.settings.wandb_project,
                    entity=self.settings.wandb_entity or None,
                    mode=self.settings.resolved_wandb_mode,
                    dir=str(_wandb_dir(self.data_dir)),
                    name=f"agent-run-{run_id}",
                    job_type="agent-run",
                    group=run["session_id"],
                    config={
                        "run_id": run_id,
                        "model": run["model"],
                        "provider": run["provider"],
                        "source": run["source"],
                        "params": run["params"],
                    },
                    tags=[run["status"], run["source"] or "studio"],
                    settings=wandb.Settings(silent=True, console="off"),
                    reinit="create_new",
                )
                try:
                    w.log(metrics)
                    w.summary.update({**metrics, "status": run["status"]})
                    return w.id
                finally:
                    w.finish()

        try:
            return call_with_retry(
                log,
                integration="wandb",
                action="log run metrics",
                subject=f"run:{run_id}",
                settings=self.settings,
                record=self.record,
            )
        except Exception:  # noqa: BLE001 - recorded; a run's metrics must not break the studio
            return None
