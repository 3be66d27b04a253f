"""/settings/prices: the dated price tables in force, and admins' overrides (JSON twin included)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template

from app.auth.guards import requires_admin
from app.core.errors import InputError
from app.pricing.bodies import PriceOverride
from app.pricing.context import prices_context
from app.pricing.tables import FIELDS, PriceError, add_override
from app.store import Store
from app.web.bodies import from_form


class PricesPage(Controller):
    path = "/settings/prices"
    include_in_schema = False

    async def _page(self, store: Store, status: int = 200, **extra: Any) -> Template:
        context = {
            "table": (await prices_context(store)).prices,
            "fields": FIELDS,
            "nav": "prices",
            "error": "",
            "values": {},
            **extra,
        }
        return Template("prices.html", context=context, status_code=status)

    @get("/")
    async def index(self, request: Request, store: NamedDependency[Store]) -> Response | Template:
        if "application/json" in request.headers.get("accept", ""):
            return Response(await prices_context(store))
        return await self._page(store)

    @post("/", guards=[requires_admin], status_code=303)
    async def create(
        self, store: NamedDependency[Store], data: URLEncodedBody[dict[str, Any]]
    ) -> Response | Template:
        try:
            await store.write(add_override, from_form(data, PriceOverride), "page", time.time())
        except (InputError, PriceError) as exc:
            return await self._page(store, status=422, error=str(exc), values=data)
        return Redirect("/settings/prices", status_code=303)
