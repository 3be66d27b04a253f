"""Start and stop the integrations with the app: price overrides, background workers.

``start_integrations`` runs after the core start-up (store, broker, runner
exist). It loads the dated price overrides from settings, registers the
fine-tuned models with the runner, and starts the watcher that reacts to
finished runs (cost alerts, W&B run metrics), the export jobs and the
fine-tune tracker. ``stop_integrations`` stops them before the store closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from litestar import Litestar

from app.alerts.notify import deliver_alerts
from app.alerts.rules import check_run
from app.core.integration_settings import IntegrationSettings
from app.exports.jobs import ExportJobs
from app.exports.wandb_export import RunMetricsLogger
from app.finetune.jobs import FineTunes
from app.pricing.tables import load_settings_overrides
from app.runs.watch import Reaction, RunWatcher
from app.store import Store

log = logging.getLogger("agentop.integrations")


def integration_settings(app: Litestar) -> IntegrationSettings:
    return getattr(app.state.settings, "integrations", None) or IntegrationSettings.from_env()


def alert_reaction(store: Store, settings: IntegrationSettings) -> Reaction:
    async def react(run_id: str) -> None:
        new = await store.write(check_run, run_id)
        if new:
            await asyncio.to_thread(deliver_alerts, store, new, settings)

    return react


def wandb_reaction(store: Store, settings: IntegrationSettings, data_dir: Path) -> Reaction:
    metrics = RunMetricsLogger(store, settings, data_dir)

    async def react(run_id: str) -> None:
        await asyncio.to_thread(metrics.log_run, run_id)

    return react


async def start_integrations(app: Litestar) -> None:
    settings = integration_settings(app)
    store, broker = app.state.store, app.state.broker
    await store.write(
        load_settings_overrides,
        settings.prices_file,
        settings.elevenlabs_usd_per_credit,
        time.time(),
    )
    reactions = [alert_reaction(store, settings)]
    if settings.wandb_run_metrics:
        reactions.append(wandb_reaction(store, settings, app.state.settings.data_dir))
    process = getattr(app.state, "process", None)
    app.state.run_watcher = RunWatcher(store, broker, reactions, process and process.id)
    app.state.run_watcher.start()
    app.state.exports = ExportJobs(
        store,
        broker,
        settings,
        app.state.settings.data_dir,
        owner=process and process.id,
        lease_s=app.state.settings.replica_lease_s,
    )
    await app.state.exports.start()
    app.state.finetunes = FineTunes(
        store,
        broker,
        settings,
        app.state.settings.agents().mistral,
        app.state.settings.data_dir,
        app.state.runner,
        app.state.exports,
    )
    await app.state.finetunes.start()


async def stop_integrations(app: Litestar) -> None:
    for name in ("finetunes", "exports", "run_watcher"):
        worker = getattr(app.state, name, None)
        if worker is not None:
            try:
                await worker.stop()
            except Exception:  # noqa: BLE001 - stopping must go on to the store
                log.exception("stopping %s failed", name)
