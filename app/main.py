"""The app factory: ``create_app(settings)`` builds the whole studio.

Tests and benchmarks pass their own settings (a temporary data dir, an
agent config pointing at a local fake Mistral server) and, if they need one,
extra providers: that is the only seam.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from litestar import Litestar, Request
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.alerts.pages import AlertsAPI, AlertsPage
from app.auth.headers import add_security_headers
from app.auth.keys import purge_expired_sessions
from app.auth.login_limits import client_address
from app.auth.middleware import PUBLIC_PATHS, AuthMiddleware
from app.auth.pages import KeysController, LoginController
from app.auth.proxies import proxy_middleware
from app.auth.secret import csrf_secret
from app.core.background import Periodic
from app.core.paths import STATIC_DIR
from app.core.settings import Settings
from app.dashboard.pages import DashboardPage
from app.evals.api import EvalsAPI
from app.evals.pages import EvalPagesController
from app.experiments.api import DatasetsAPI, ExperimentsAPI
from app.experiments.pages import ExperimentPagesController
from app.experiments.queries import interrupt_unfinished_experiments
from app.experiments.runner import Experiments
from app.exports.jobs import interrupt_exports
from app.exports.pages import ExportsAPI, ExportsPage
from app.finetune.pages import FineTuneAPI, FineTunePage
from app.ingest.api import GenAIMetricsAPI, OTLPController
from app.ingest.grpc_server import start_otlp_grpc, stop_otlp_grpc
from app.memory.api import MemoryAPI
from app.memory.pages import MemoryPages
from app.pricing.pages import PricesPage
from app.replay.api import DiffsAPI, ReplayAPI
from app.replay.pages import ReplayPagesController
from app.runs.api import HealthController, RunsAPI
from app.runs.live_lists import LiveListsController
from app.runs.pages import PagesController
from app.runs.pins import PinPages, PinsAPI
from app.runs.process_registry import ProcessRegistration
from app.runs.retention_task import Retention
from app.runs.runner import Runner
from app.runs.watchdog import RunWatchdog
from app.services import start_integrations, stop_integrations
from app.sessions.pages import SessionPagesController, SessionsAPI
from app.store import Store
from app.store.events import sweep_orphans
from app.store.live import Broker, LiveEvent
from app.store.processes import SERVE, heartbeat_every, live_peers
from app.traces.api import TracesAPI
from app.traces.pages import TracePages
from app.web.deps import DEPENDENCIES
from app.web.errors import EXCEPTION_HANDLERS
from app.web.render import make_environment

log = logging.getLogger("agentop")


def _is_login_attempt(request: Request) -> bool:
    return request.method == "POST" and request.url.path == "/login"


def start_relay(settings: Settings, store: Store, broker: Broker, origin: str) -> Any:
    """Relay live events to and from the other replicas on PostgreSQL (app.store.postgres.relay)."""
    from app.store.postgres.relay import PgRelay, store_fetch

    relay = PgRelay(str(settings.database_url), origin, broker, store_fetch(store))
    relay.start(asyncio.get_running_loop())
    broker.relay = relay.send
    return relay


async def sweep_replicas(state: State, lease_s: float) -> None:
    """End what replicas whose lease ran out left unfinished, and tell live followers.

    Runs end ``interrupted``, experiments too, exports fail; their fine-tune
    jobs are tracked on from here.
    """
    store, broker = state.store, state.broker
    now = time.time()
    for run_id, seq, stored, run in await store.write(sweep_orphans, now, lease_s):
        log.warning("run %s interrupted: its server's lease ran out", run_id)
        broker.publish(LiveEvent(run_id, seq, stored["type"], stored, run))
    # Their pages follow them under these keys and read the payload, not the number.
    for experiment_id in await store.write(interrupt_unfinished_experiments, now, lease_s, False):
        end = {"item_id": None, "final": True}
        broker.publish(LiveEvent(f"experiment:{experiment_id}", 1, "experiment_progress", end))
    for row in await store.write(interrupt_exports, now, lease_s, False):
        broker.publish(LiveEvent(f"export:{row['id']}", 1, "export_progress", row))
    finetunes = getattr(state, "finetunes", None)
    if finetunes is not None:
        await finetunes.adopt()


def create_app(
    settings: Settings | None = None, extra_providers: list[Any] | None = None
) -> Litestar:
    settings = settings or Settings.from_env()
    jinja = make_environment()

    async def start(app: Litestar) -> None:
        store = Store(settings.db_path, url=settings.database_url)
        lease_s = settings.replica_lease_s
        # Registered before the sweep: it spares the runs of every live process.
        app.state.process = ProcessRegistration(
            store, SERVE, settings.server_url, every_s=heartbeat_every(lease_s)
        )
        await app.state.process.start()
        now = time.time()
        # Runs with no owner (ingested ones) only when no other replica may be receiving them.
        alone = not store.read_sync(live_peers, app.state.process.id, now, lease_s)
        interrupted = store.write_sync(sweep_orphans, now, lease_s, unowned=alone)
        if interrupted:
            log.warning("marked %d run(s) interrupted by the last stop", len(interrupted))
        store.write_sync(purge_expired_sessions, time.time())
        app.state.store = store
        app.state.broker = Broker()
        if store.dialect == "postgresql":
            app.state.relay = start_relay(settings, store, app.state.broker, app.state.process.id)
        app.state.runner = Runner(
            store,
            app.state.broker,
            settings.agents(),
            settings.data_dir,
            extra_providers=extra_providers,
            max_concurrent=settings.max_concurrent_runs,
            tool_threads=settings.tool_threads,
            max_queued=settings.max_queued_runs,
            owner=app.state.process.id,
        )
        store.write_sync(interrupt_unfinished_experiments, now, lease_s, alone)
        app.state.experiments = Experiments(store, app.state.runner, app.state.broker)
        app.state.watchdog = RunWatchdog(
            store, app.state.broker, app.state.runner, settings.run_stall_timeout_s
        )
        app.state.watchdog.start()
        # Every replica, all along: the runs of one that died are ended once its lease ran out.
        app.state.sweeper = Periodic(
            "sweep of orphaned runs",
            lease_s / 2,
            functools.partial(sweep_replicas, app.state, lease_s),
        )
        app.state.sweeper.start()
        if settings.retention_days is not None:
            app.state.retention = Retention(store, settings.retention_days)
            app.state.retention.start()

    async def stop(app: Litestar) -> None:
        experiments = getattr(app.state, "experiments", None)
        if experiments is not None:  # before the runner: they wait on its runs
            await experiments.shutdown()
        runner = getattr(app.state, "runner", None)
        if runner is not None:  # with the watchdog, heartbeat, relay and integrations on
            await runner.drain(settings.drain_s)
        for name in ("sweeper", "watchdog", "retention"):
            periodic = getattr(app.state, name, None)
            if periodic is not None:
                await periodic.stop()
        await stop_integrations(app)
        if runner is not None:
            await runner.shutdown()
        relay = getattr(app.state, "relay", None)
        if relay is not None:  # after the runs' last events: they are relayed too
            await asyncio.to_thread(relay.stop)
        process = getattr(app.state, "process", None)
        if process is not None:  # after the runs recorded their interruption
            await process.stop()
        store = getattr(app.state, "store", None)
        if store is not None:
            store.close()

    return Litestar(
        route_handlers=[
            # Grouped by domain: its pages, then its JSON twins.
            DashboardPage,
            PagesController,
            RunsAPI,
            HealthController,
            LiveListsController,
            PinPages,
            PinsAPI,
            ReplayPagesController,
            ReplayAPI,
            DiffsAPI,
            SessionPagesController,
            SessionsAPI,
            MemoryPages,
            MemoryAPI,
            TracePages,
            TracesAPI,
            EvalPagesController,
            EvalsAPI,
            ExperimentPagesController,
            DatasetsAPI,
            ExperimentsAPI,
            OTLPController,
            GenAIMetricsAPI,
            ExportsPage,
            ExportsAPI,
            FineTunePage,
            FineTuneAPI,
            AlertsPage,
            AlertsAPI,
            PricesPage,
            LoginController,
            KeysController,
            create_static_files_router(path="/static", directories=[STATIC_DIR]),
        ],
        dependencies={name: Provide(fn, sync_to_thread=False) for name, fn in DEPENDENCIES.items()},
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(jinja)),
        on_startup=[start, start_integrations, start_otlp_grpc],
        # gRPC first: no export may be in flight when the store closes.
        on_shutdown=[stop_otlp_grpc, stop],
        state=State({"settings": settings, "jinja": jinja}),
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        middleware=[
            # First: everything after it sees the client a trusted proxy forwarded.
            *proxy_middleware(settings.trusted_proxies),
            DefineMiddleware(AuthMiddleware, exclude=PUBLIC_PATHS),
            RateLimitConfig(
                rate_limit=("minute", settings.login_attempts_per_minute),
                check_throttle_handler=_is_login_attempt,
                identifier_for_request=client_address,
            ).middleware,
        ],
        csrf_config=CSRFConfig(
            secret=csrf_secret(settings),
            cookie_samesite="lax",
            # Header-key API clients carry no cookie to forge; the auth middleware
            # refuses cookie sessions for state changes under these prefixes.
            exclude=["^/api/", "^/v1/"],
        ),
        before_send=[add_security_headers],
        openapi_config=OpenAPIConfig(title="AgentOp-Studio", version="0.1.0", path="/schema"),
        debug=False,
    )
