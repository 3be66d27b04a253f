"""Login with an API key, logout, and the admins' key management page.

Key management refuses what would lock the team out (revoking or demoting
the last active admin key, with the reason on the page) and asks before an
admin revokes the key they are logged in with: a plain confirmation form,
so it works without JavaScript.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from app.auth.bodies import KeyCreate, KeyRevoke, KeyRoleChange, LoginForm
from app.auth.guards import requires_admin
from app.auth.keys import (
    ROLES,
    SESSION_DAYS,
    KeyError_,
    LastAdminError,
    create_key,
    create_session,
    delete_session,
    find_key,
    list_keys,
    revoke_key,
    set_role,
)
from app.auth.login_limits import count_failure, prefix_locked
from app.auth.middleware import SESSION_COOKIE
from app.core.errors import InputError
from app.store import Store
from app.web.bodies import from_form


def safe_next(value: Any) -> str:
    """Only same-site paths: never an open redirect."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def _secure(request: Request) -> bool:
    # Believed from any peer, unlike X-Forwarded-For: the header can only make the
    # sender's own cookie stricter (HTTPS only), never weaken anyone's.
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto == "https"


class LoginController(Controller):
    path = "/"
    include_in_schema = False

    @get("/login")
    async def login_form(
        self, next_path: Annotated[str, QueryParameter(name="next")] = "/"
    ) -> Template:
        return Template("login.html", context={"next": safe_next(next_path), "error": ""})

    @post("/login", status_code=303)
    async def login(
        self,
        request: Request,
        store: NamedDependency[Store],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response:
        form = from_form(data, LoginForm)
        key = form.key.strip()
        target = safe_next(form.next)
        limit = request.app.state.settings.login_attempts_per_minute
        if await prefix_locked(request, key, limit):
            return Template(
                "login.html",
                context={
                    "next": target,
                    "error": "Too many failed tries with this key. Wait a minute and try again.",
                },
                status_code=429,
            )
        row = await store.read(find_key, key) if key else None
        if row is None:
            await count_failure(request, key)
            return Template(
                "login.html",
                context={"next": target, "error": "That key is not valid (or was revoked)."},
                status_code=401,
            )
        token = await store.write(create_session, row["id"])
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=token,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/",
            max_age=SESSION_DAYS * 86400,
        )
        return Redirect(target, status_code=303, cookies=[cookie])

    @post("/logout", status_code=303)
    async def logout(self, request: Request, store: NamedDependency[Store]) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await store.write(delete_session, token)
        response = Redirect("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


class KeysController(Controller):
    path = "/settings/keys"
    guards = [requires_admin]
    include_in_schema = False

    async def _page(
        self, request: Request, store: Store, status: int = 200, **extra: Any
    ) -> Template:
        keys = await store.read(list_keys)
        context = {
            "keys": keys,
            "me": getattr(request.user, "key_id", None),
            "action_error": "",
            "roles": ROLES,
            "nav": "keys",
            "created": None,
            "error": "",
            "confirm_revoke": None,
            **extra,
        }
        return Template("keys.html", context=context, status_code=status)

    @get("/")
    async def index(self, request: Request, store: NamedDependency[Store]) -> Template:
        return await self._page(request, store)

    @post("/", status_code=200)
    async def create(
        self,
        request: Request,
        store: NamedDependency[Store],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Template:
        try:
            body = from_form(data, KeyCreate)
            row, secret = await store.write(create_key, body.name, body.role)
        except (InputError, KeyError_) as exc:
            return await self._page(request, store, error=str(exc), status=422)
        return await self._page(request, store, created={"row": row, "secret": secret})

    @post("/revoke", status_code=200)
    async def revoke(
        self,
        request: Request,
        store: NamedDependency[Store],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Response:
        body = from_form(data, KeyRevoke)
        name = body.name
        keys = {k["name"]: k for k in await store.read(list_keys)}
        if name not in keys:
            raise NotFoundException(f"no key named {name!r}")
        own = keys[name]["id"] == getattr(request.user, "key_id", None)
        if own and body.confirm != "yes" and not keys[name]["revoked_at"]:
            return await self._page(request, store, confirm_revoke=keys[name])
        try:
            await store.write(revoke_key, name)
        except LastAdminError as exc:
            return await self._page(request, store, action_error=str(exc), status=409)
        except KeyError_ as exc:  # gone meanwhile
            raise NotFoundException(str(exc)) from exc
        if own:  # that ended this very session
            response = Redirect("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        return await self._page(request, store)

    @post("/role", status_code=200)
    async def change_role(
        self,
        request: Request,
        store: NamedDependency[Store],
        data: URLEncodedBody[dict[str, Any]],
    ) -> Template:
        body = from_form(data, KeyRoleChange)
        try:
            await store.write(set_role, body.name, body.role)
        except LastAdminError as exc:
            return await self._page(request, store, action_error=str(exc), status=409)
        except KeyError_ as exc:
            return await self._page(request, store, action_error=str(exc), status=422)
        return await self._page(request, store)
