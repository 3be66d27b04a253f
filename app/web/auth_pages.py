"""Login with an API key, logout, and the admins' key management page."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from app.auth.guards import requires_admin
from app.auth.keys import (
    ROLES,
    KeyError_,
    create_key,
    create_session,
    delete_session,
    find_key,
    list_keys,
    revoke_key,
)
from app.auth.middleware import SESSION_COOKIE
from app.store import Store


def safe_next(value: Any) -> str:
    """Only same-site paths: never an open redirect."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def _secure(request: Request) -> bool:
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
        key = str(data.get("key") or "").strip()
        row = await store.read(find_key, key) if key else None
        target = safe_next(data.get("next"))
        if row is None:
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
            max_age=14 * 86400,
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

    async def _page(self, store: Store, status: int = 200, **extra: Any) -> Template:
        keys = await store.read(list_keys)
        context = {
            "keys": keys,
            "roles": ROLES,
            "nav": "keys",
            "created": None,
            "error": "",
            **extra,
        }
        return Template("keys.html", context=context, status_code=status)

    @get("/")
    async def index(self, store: NamedDependency[Store]) -> Template:
        return await self._page(store)

    @post("/", status_code=200)
    async def create(
        self, store: NamedDependency[Store], data: URLEncodedBody[dict[str, Any]]
    ) -> Template:
        try:
            row, secret = await store.write(
                create_key, str(data.get("name") or ""), str(data.get("role") or "")
            )
        except KeyError_ as exc:
            return await self._page(store, error=str(exc), status=422)
        return await self._page(store, created={"row": row, "secret": secret})

    @post("/revoke", status_code=200)
    async def revoke(
        self, store: NamedDependency[Store], data: URLEncodedBody[dict[str, Any]]
    ) -> Template:
        try:
            await store.write(revoke_key, str(data.get("name") or ""))
        except KeyError_ as exc:
            raise NotFoundException(str(exc)) from exc
        return await self._page(store)
