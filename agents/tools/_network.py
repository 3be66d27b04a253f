"""Network tools that fail at once, saying why, when the service cannot be reached.

A tool's time limit bounds a whole call; waiting it out is right for a slow
service, wrong for one that is certainly not there. So connecting gets a
short timeout of its own (:func:`http_timeout`, or the request hook
:func:`short_connect` for an SDK that sets one timeout for everything), and a failure to connect
whose cause is certain - the host cannot be resolved, the connection is
refused, no connection within the connect timeout - becomes
:class:`Unreachable`, a message naming the host and the cause instead of a
transport error or a wait of the whole limit.

Not a tool (no ``SPEC``): the leading underscore keeps it out of tool names.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

# Seconds to connect. A reachable service answers a connect on a LAN or the
# internet in well under this; the rest of the time limit is for the reply.
CONNECT_TIMEOUT_S = 3.0


class Unreachable(ConnectionError):
    """A service a tool needs cannot be reached now; the message says which and why."""


def http_timeout(limit_s: float) -> httpx.Timeout:
    """``limit_s`` for the reply, but never more than :data:`CONNECT_TIMEOUT_S` to connect."""
    import httpx

    return httpx.Timeout(limit_s, connect=min(CONNECT_TIMEOUT_S, limit_s))


def short_connect(request: httpx.Request) -> None:
    """An httpx request hook: at most :data:`CONNECT_TIMEOUT_S` to connect, whatever
    timeout the request carries (for SDKs that pass one float for every phase)."""
    timeout = dict(request.extensions.get("timeout") or {})
    connect = timeout.get("connect")
    timeout["connect"] = CONNECT_TIMEOUT_S if connect is None else min(connect, CONNECT_TIMEOUT_S)
    request.extensions["timeout"] = timeout


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from (httpx wraps httpcore wraps socket errors)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def unreachable(exc: Exception, service: str, url: str) -> Unreachable | None:
    """``exc`` as :class:`Unreachable` when it says for certain that ``url`` cannot be
    reached (unresolvable host, refused connection, connect timeout); else None."""
    import httpx

    if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return None
    parts = urlsplit(url)
    host = parts.hostname or url
    causes = _causes(exc)
    if any(isinstance(c, socket.gaierror) for c in causes):
        why = f"the host {host} cannot be resolved (offline, or no DNS)"
    elif any(isinstance(c, ConnectionRefusedError) for c in causes):
        why = f"{host}:{parts.port or ('443' if parts.scheme == 'https' else '80')} refused the connection"
    elif isinstance(exc, httpx.ConnectTimeout):
        why = f"no connection to {host} within {CONNECT_TIMEOUT_S:g} s (offline?)"
    else:
        why = f"cannot connect to {host}: {exc}"
    return Unreachable(f"{service} is unreachable: {why}; nothing was sent")
