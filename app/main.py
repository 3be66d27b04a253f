"""The app factory: ``create_app(settings)`` builds the whole studio.

Tests and benchmarks pass their own settings (a temporary data dir, an
agent config pointing at a local fake Mistral server) and, if they need one,
extra providers: that is the only seam.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

from litestar import Litestar, MediaType, Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.template.config import TemplateConfig

from app.auth.headers import add_security_headers
from app.auth.keys import purge_expired_sessions
from app.auth.login_limits import client_address
from app.auth.middleware import PUBLIC_PATHS, AuthMiddleware
from app.auth.pages import KeysController, LoginController
from app.auth.proxies import proxy_middleware
from app.core.settings import Settings
from app.evals.api import DatasetsAPI, EvalsAPI, ExperimentsAPI, MemoryAPI
from app.evals.pages import EvalPagesController
from app.experiments.pages import ExperimentPagesController
from app.experiments.queries import interrupt_unfinished_experiments
from app.experiments.runner import Experiments
from app.replay.api import DiffsAPI, ReplayAPI
from app.replay.pages import ReplayPagesController
from app.runs.api import HealthController, RunsAPI
from app.runs.live_lists import LiveListsController
from app.runs.pages import PagesController
from app.runs.process_registry import ProcessRegistration
from app.runs.runner import InputError, Runner, RunQueueFull
from app.runs.watchdog import RunWatchdog
from app.services import start_integrations, stop_integrations
from app.sessions.pages import SessionPagesController, SessionsAPI
from app.store import Store
from app.store.db import StorageUnavailable
from app.store.events import interrupt_unfinished
from app.store.live import Broker
from app.store.processes import SERVE
from app.web.deps import DEPENDENCIES
from app.web.integrations import CONTROLLERS as INTEGRATION_CONTROLLERS
from app.web.render import STATIC_DIR, make_environment

log = logging.getLogger("agentop")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/v1/", "/schema")) and "text/html" in (
        request.headers.get("accept", "")
    )


def _error_response(request: Request, status: int, message: str, extra: Any = None) -> Response:
    if _wants_html(request):
        return Template(
            "error.html", context={"status": status, "message": message}, status_code=status
        )
    body: dict[str, Any] = {"status_code": status, "detail": message}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, media_type=MediaType.JSON)


def handle_input_error(request: Request, exc: InputError) -> Response:
    return _error_response(request, 400, str(exc))


def handle_queue_full(request: Request, exc: RunQueueFull) -> Response:
    response = _error_response(request, 429, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def handle_storage_unavailable(request: Request, exc: StorageUnavailable) -> Response:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    response = _error_response(request, 503, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def handle_overflow(request: Request, exc: OverflowError) -> Response:
    # A number that validated as an int but does not fit SQLite's 64 bits.
    return _error_response(request, 400, "a number in the request is out of range")


# Litestar turns malformed JSON into a 400 itself, but not the two errors its
# decoder (msgspec) raises past it: bytes that are not UTF-8, and nesting
# deeper than the interpreter's recursion limit.
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def handle_undecodable_body(request: Request, exc: UnicodeDecodeError) -> Response:
    if request.method not in _BODY_METHODS:
        return handle_unexpected(request, exc)
    return _error_response(request, 400, "the request body is not valid UTF-8")


def handle_too_deep(request: Request, exc: RecursionError) -> Response:
    # Only the decoders' own messages (msgspec, json): any other RecursionError is a bug of ours.
    decoding = any(word in str(exc) for word in ("deserializ", "decoding a JSON"))
    if request.method not in _BODY_METHODS or not decoding:
        return handle_unexpected(request, exc)
    return _error_response(request, 400, "the request body is nested too deeply")


def handle_http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 401 and not request.url.path.startswith(("/api/", "/v1/", "/schema")):
        # People are sent to the login page; API clients get the 401.
        target = "/login?" + urlencode({"next": request.url.path})
        if request.headers.get("hx-request") == "true":
            return Response(content=None, status_code=401, headers={"HX-Redirect": target})
        if _wants_html(request):
            return Redirect(target, status_code=303)
    return _error_response(request, exc.status_code, exc.detail, getattr(exc, "extra", None))


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_response(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


def _is_login_attempt(request: Request) -> bool:
    return request.method == "POST" and request.url.path == "/login"


def create_app(
    settings: Settings | None = None, extra_providers: list[Any] | None = None
) -> Litestar:
    settings = settings or Settings.from_env()
    jinja = make_environment()

    async def start(app: Litestar) -> None:
        store = Store(settings.db_path)
        # Registered before the sweep: it spares the runs of every live process.
        app.state.process = ProcessRegistration(store, SERVE, settings.server_url)
        await app.state.process.start()
        interrupted = store.write_sync(interrupt_unfinished, time.time())
        if interrupted:
            log.warning("marked %d run(s) interrupted by the last stop", len(interrupted))
        store.write_sync(purge_expired_sessions, time.time())
        app.state.store = store
        app.state.broker = Broker()
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
        store.write_sync(interrupt_unfinished_experiments)
        app.state.experiments = Experiments(store, app.state.runner)
        app.state.watchdog = RunWatchdog(
            store, app.state.broker, app.state.runner, settings.run_stall_timeout_s
        )
        app.state.watchdog.start()

    async def stop(app: Litestar) -> None:
        watchdog = getattr(app.state, "watchdog", None)
        if watchdog is not None:
            await watchdog.stop()
        experiments = getattr(app.state, "experiments", None)
        if experiments is not None:  # before the runner: they wait on its runs
            await experiments.shutdown()
        await stop_integrations(app)
        runner = getattr(app.state, "runner", None)
        if runner is not None:
            await runner.shutdown()
        process = getattr(app.state, "process", None)
        if process is not None:  # after the runs recorded their interruption
            await process.stop()
        store = getattr(app.state, "store", None)
        if store is not None:
            store.close()

    return Litestar(
        route_handlers=[
            HealthController,
            RunsAPI,
            LiveListsController,
            PagesController,
            LoginController,
            KeysController,
            EvalsAPI,
            MemoryAPI,
            DatasetsAPI,
            ExperimentsAPI,
            EvalPagesController,
            ExperimentPagesController,
            *INTEGRATION_CONTROLLERS,
            ReplayAPI,
            DiffsAPI,
            ReplayPagesController,
            SessionsAPI,
            SessionPagesController,
            create_static_files_router(path="/static", directories=[STATIC_DIR]),
        ],
        dependencies={name: Provide(fn, sync_to_thread=False) for name, fn in DEPENDENCIES.items()},
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(jinja)),
        on_startup=[start, start_integrations],
        on_shutdown=[stop],
        state=State({"settings": settings, "jinja": jinja}),
        exception_handlers={
            InputError: handle_input_error,
            RunQueueFull: handle_queue_full,
            StorageUnavailable: handle_storage_unavailable,
            OverflowError: handle_overflow,
            UnicodeDecodeError: handle_undecodable_body,
            RecursionError: handle_too_deep,
            HTTPException: handle_http_error,
            NotFoundException: handle_http_error,
            Exception: handle_unexpected,
        },
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
            secret=settings.secret(),
            cookie_samesite="lax",
            # Header-key API clients carry no cookie to forge; the auth middleware
            # refuses cookie sessions for state changes under these prefixes.
            exclude=["^/api/", "^/v1/"],
        ),
        before_send=[add_security_headers],
        openapi_config=OpenAPIConfig(title="AgentOp-Studio", version="0.1.0", path="/schema"),
        debug=False,
    )
