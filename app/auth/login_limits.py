"""How often a login may be tried: per client address, and per key prefix tried.

Two limits, each ``login_attempts_per_minute`` in a sliding minute:

- per client address, every ``POST /login`` (Litestar's rate-limit
  middleware, keyed by :func:`client_address`). The address is the peer's,
  or the one a trusted proxy forwarded (``app.auth.proxies``): a client
  cannot reset the limit by sending a new ``X-Forwarded-For``.
- per key prefix (the first characters of the submitted key, which tell
  keys apart), failed tries only: guessing at one key from many addresses
  is stopped too. A locked prefix refuses every try, right or wrong, for
  the rest of the minute; checking the key first would let guesses go on.
  API calls with the key in a header are not affected.

Counts live in a Litestar store (in memory, per process).
"""

from __future__ import annotations

import json
import time
from typing import Any

from litestar import Request

from app.auth.keys import key_prefix

WINDOW_S = 60
STORE = "login_prefixes"


def client_address(request: Request[Any, Any, Any]) -> str:
    """The client's address for rate limiting.

    ``scope["client"]`` after proxy headers were applied from trusted peers
    only (uvicorn, and the app's own ``ProxyHeadersMiddleware``); raw
    ``X-Forwarded-For`` is never read here.
    """
    return request.client.host if request.client else "unknown"


async def _recent(request: Request[Any, Any, Any], prefix: str, now: float) -> list[float]:
    raw = await request.app.stores.get(STORE).get(prefix)
    tries = json.loads(raw) if raw else []
    return [t for t in tries if t > now - WINDOW_S]


async def prefix_locked(request: Request[Any, Any, Any], secret: str, limit: int) -> bool:
    """Whether ``limit`` tries with this key's prefix failed in the last minute."""
    if not secret:
        return False
    return len(await _recent(request, key_prefix(secret), time.time())) >= limit


async def count_failure(request: Request[Any, Any, Any], secret: str) -> None:
    """Count one failed login with this key's prefix."""
    if not secret:
        return
    prefix, now = key_prefix(secret), time.time()
    tries = [*await _recent(request, prefix, now), now]
    await request.app.stores.get(STORE).set(prefix, json.dumps(tries), expires_in=WINDOW_S)
