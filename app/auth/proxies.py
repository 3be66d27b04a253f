"""Which peers may tell us the client's address: ``AGENTOP_TRUSTED_PROXIES``.

``X-Forwarded-For`` (and ``X-Forwarded-Proto``) are believed only from a
peer listed there (IPs or CIDR networks, comma-separated); by default no
peer is, so a client cannot pick its own address by sending the header and
so cannot escape the login rate limit. Each entry is checked to be an IP or
a network when the settings are read (``app.core.settings``).

The one setting drives both places that read those headers, with the same
code (uvicorn's ``ProxyHeadersMiddleware``, which takes the right-most
untrusted address of the chain):

- ``agentop serve`` passes it to uvicorn (``proxy_headers``,
  ``forwarded_allow_ips``); uvicorn's own default would trust 127.0.0.1;
- the app applies the same middleware itself, so the address the rate
  limiter keys on is resolved the same way under any ASGI server. Applying
  it after uvicorn changes nothing: the address uvicorn settled on is
  either untrusted (then the header is not read again) or the left-most of
  an all-trusted chain (then reading it again gives the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from litestar.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


def uvicorn_proxy_options(trusted: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``: trust exactly ``trusted``."""
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": ",".join(trusted)}


def proxy_middleware(trusted: tuple[str, ...]) -> list[Callable[[ASGIApp], ASGIApp]]:
    """The app's own proxy-header resolution (none when no proxy is trusted)."""
    if not trusted:
        return []

    def resolve_forwarded(app: ASGIApp) -> ASGIApp:
        # uvicorn types its ASGI callables apart from Litestar's; the protocol is one.
        return cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=list(trusted)))

    return [resolve_forwarded]
