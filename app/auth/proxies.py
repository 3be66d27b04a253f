"""Which peers may tell us the client's address: ``AGENTOP_TRUSTED_PROXIES``.

``X-Forwarded-For`` (and ``X-Forwarded-Proto``) are believed only from a
peer listed there (IPs or CIDR networks, comma-separated); by default no
peer is, so a client cannot pick its own address by sending the header and
so cannot escape the login rate limit.

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

import ipaddress
from collections.abc import Callable
from typing import Any, cast

from litestar.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


class ProxySettingError(ValueError):
    """An entry of ``AGENTOP_TRUSTED_PROXIES`` that is not an IP address or network."""


def parse_trusted_proxies(value: str | None) -> tuple[str, ...]:
    """``"10.0.0.1, 10.1.0.0/16"`` → the entries, each checked to be an IP or a network.

    uvicorn quietly treats anything else as a literal host name that never
    matches; a typo here would silently trust nobody (or, worse, be read as
    trusting someone), so it is refused with the entry named.
    """
    entries = []
    for entry in (part.strip() for part in (value or "").split(",")):
        if not entry:
            continue
        try:
            # Written the way uvicorn parses them: a network with host bits set
            # (10.0.0.1/24) would be a never-matching literal there.
            if "/" in entry:
                entries.append(str(ipaddress.ip_network(entry, strict=False)))
            else:
                entries.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            raise ProxySettingError(
                f"AGENTOP_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
                " (e.g. 10.0.0.5 or 10.0.0.0/24)"
            ) from None
    return tuple(entries)


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
