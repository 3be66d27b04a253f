"""Who is calling: an API key in a header, or a browser session cookie.

API clients send ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; people
log in at /login and carry an HttpOnly session cookie. A session cookie is
not accepted for state-changing calls under /api or /v1: those skip CSRF
checks, so only a header key may change state there.

A key's "last used" is refreshed however it is used, by header or through a
browser session, at most once a minute (``TOUCH_EVERY_S``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from app.auth.keys import find_key, find_session, touch_key
from app.store.db import StorageUnavailable

SESSION_COOKIE = "agentop_session"
PUBLIC_PATHS = ["^/api/health", "^/api/ready", "^/login", "^/static/", "^/favicon"]
API_PREFIXES = ("/api/", "/v1/")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# last_used_at is refreshed at most this often per key: a write per request
# would queue every read behind the single writer.
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class Principal:
    key_id: int | None
    name: str
    role: str
    via: str  # key | session | no-auth


NO_AUTH = Principal(key_id=None, name="local (no auth)", role="admin", via="no-auth")


def key_from_headers(connection: ASGIConnection) -> str | None:
    key = connection.headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = connection.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class AuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        state = connection.app.state
        if not state.settings.auth:
            return AuthenticationResult(user=NO_AUTH, auth=None)
        store = state.store
        secret = key_from_headers(connection)
        if secret is not None:
            row = await store.read(find_key, secret)
            if row is None:
                raise NotAuthorizedException("invalid or revoked API key")
            await self._touch(connection, row)
            return AuthenticationResult(
                user=Principal(row["id"], row["name"], row["role"], "key"), auth=secret
            )
        token = connection.cookies.get(SESSION_COOKIE)
        if token:
            row = await store.read(find_session, token)
            if row is not None:
                path = connection.url.path
                method = connection.scope.get("method", "GET")
                if path.startswith(API_PREFIXES) and method not in SAFE_METHODS:
                    raise NotAuthorizedException(
                        "send an API key (X-API-Key) to change state through the API"
                    )
                await self._touch(connection, row)
                return AuthenticationResult(
                    user=Principal(row["id"], row["name"], row["role"], "session"), auth=token
                )
        raise NotAuthorizedException("authentication required: log in or send an API key")

    async def _touch(self, connection: ASGIConnection, row: dict) -> None:
        now = time.time()
        if (row.get("last_used_at") or 0) < now - TOUCH_EVERY_S:
            # Bookkeeping only: a store that cannot write must not refuse a read.
            with contextlib.suppress(StorageUnavailable):
                await connection.app.state.store.write(touch_key, row["id"], now)
