"""Role guards: viewers read, members run/replay/evaluate/export, admins manage keys."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.auth.keys import role_at_least


def who(connection: ASGIConnection) -> str | None:
    """The name of the key behind a request (recorded as author or creator), if any."""
    return getattr(connection.scope.get("user"), "name", None)


def author(connection: ASGIConnection) -> str:
    """``who``, or "unknown" where a job must name someone (exports, fine-tunes)."""
    return who(connection) or "unknown"


def _require(role: str, connection: ASGIConnection) -> None:
    user = connection.scope.get("user")
    if user is None or not role_at_least(user.role, role):
        have = getattr(user, "role", "none")
        raise PermissionDeniedException(f"this needs the {role} role (you are {have})")


def requires_member(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    _require("member", connection)


def requires_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    _require("admin", connection)
