"""OTLP/gRPC beside the web server: the same process, the same event loop, the same store.

``start_otlp_grpc`` runs on app start-up (after the store and broker exist)
and listens on ``AGENTOP_OTLP_GRPC_PORT`` (default 4317, the OTLP/gRPC port;
0 turns it off) at the host ``agentop serve --host`` binds. ``stop_otlp_grpc``
runs first on shutdown, so no export is in flight when the store closes.
Without the ``otel-grpc`` extra (grpcio) the studio says so in one line and
serves HTTP anyway.

``check_port`` lets ``agentop serve`` refuse a busy port in one line before
the web server starts: a failing start-up hook would be reported by uvicorn
with a traceback.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING, Any

from agents.extras import MissingExtra, require
from app.core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from litestar import Litestar

log = logging.getLogger("agentop.ingest")

VARIABLE = "AGENTOP_OTLP_GRPC_PORT"
# Exports in flight get this long to finish on shutdown before they are cancelled.
STOP_GRACE_S = 5.0


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as grpc spells it (an IPv6 host in brackets; no host = every address)."""
    host = host or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_error(host: str, port: int, cause: str) -> SettingsError:
    """The one-line error for a port the gRPC server cannot listen on."""
    return SettingsError(
        f"invalid setting {VARIABLE}={port}: cannot listen on {grpc_address(host, port)}"
        f" ({cause}); choose a free port, or 0 to turn OTLP/gRPC off"
    )


def check_port(settings: Settings) -> None:
    """Raise a :class:`SettingsError` if the gRPC port is taken (or forbidden) on the host."""
    port = settings.otlp_grpc_port
    if not port:
        return
    try:
        addresses = socket.getaddrinfo(
            settings.host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return  # a host that does not resolve: the web server's own error says so
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As grpc binds: a port held only by closing connections (TIME_WAIT) is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                # Other errors (an address this host lacks) are the web server's to report.
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise port_error(settings.host, port, exc.strerror or str(exc)) from None


async def start_otlp_grpc(app: Litestar) -> None:
    settings: Settings = app.state.settings
    port = settings.otlp_grpc_port
    if not port:
        return
    try:
        require("grpc", "otel-grpc")
    except MissingExtra as exc:
        log.warning("OTLP/gRPC is off: %s", exc)
        return
    # Imported now that grpc is known to be there.
    from app.ingest.grpc_services import build_server

    server: Any = build_server(app.state.store, app.state.broker, settings.auth)
    address = grpc_address(settings.host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # grpc's own message only says "Failed to bind"
        raise port_error(settings.host, port, "in use, or not allowed") from None
    await server.start()
    app.state.otlp_grpc = server
    log.info("OTLP/gRPC on %s", grpc_address(settings.host, bound))


async def stop_otlp_grpc(app: Litestar) -> None:
    server = getattr(app.state, "otlp_grpc", None)
    if server is not None:
        app.state.otlp_grpc = None
        await server.stop(STOP_GRACE_S)
