"""Alerts: the page (rules, history, delivery errors) and its JSON twin under /api/alerts.

Everyone signed in reads alerts; only admins manage rules, since a rule makes
the server POST to a URL and send e-mail on the team's behalf.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, URLEncodedBody
from litestar.response import Redirect, Template

from app.alerts.bodies import KINDS, RuleCreate
from app.alerts.context import AlertList, AlertRule, alerts_context, as_rule
from app.alerts.rules import create_rule, delete_rule, list_rules, set_enabled
from app.auth.guards import requires_admin
from app.core.errors import InputError
from app.store import Store
from app.web.bodies import from_form
from app.web.params import RowId


async def _page(store: Store, status: int = 200, **extra: Any) -> Template:
    listed = await alerts_context(store)
    context = {
        "rules": listed.rules,
        "alerts": listed.alerts,
        "errors": listed.errors,
        "kinds": KINDS,
        "nav": "alerts",
        "values": {},
        "error": "",
        **extra,
    }
    return Template("alerts.html", context=context, status_code=status)


class AlertsPage(Controller):
    path = "/alerts"
    include_in_schema = False

    @get("/")
    async def index(self, store: NamedDependency[Store]) -> Template:
        return await _page(store)

    @post("/rules", guards=[requires_admin], status_code=303)
    async def create(
        self, store: NamedDependency[Store], data: URLEncodedBody[dict[str, Any]]
    ) -> Response | Template:
        try:
            await store.write(create_rule, from_form(data, RuleCreate))
        except InputError as exc:
            return await _page(store, status=422, values=data, error=str(exc))
        return Redirect("/alerts", status_code=303)

    @post("/rules/{rule_id:int}/toggle", guards=[requires_admin], status_code=303)
    async def toggle(self, rule_id: RowId, store: NamedDependency[Store]) -> Response:
        rule = await store.read(lambda db: [r for r in list_rules(db) if r["id"] == rule_id])
        if not rule:
            raise NotFoundException(f"alert rule {rule_id} not found")
        await store.write(set_enabled, rule_id, not rule[0]["enabled"])
        return Redirect("/alerts", status_code=303)

    @post("/rules/{rule_id:int}/delete", guards=[requires_admin], status_code=303)
    async def remove(self, rule_id: RowId, store: NamedDependency[Store]) -> Response:
        if not await store.write(delete_rule, rule_id):
            raise NotFoundException(f"alert rule {rule_id} not found")
        return Redirect("/alerts", status_code=303)


class AlertsAPI(Controller):
    path = "/api/alerts"
    tags = ["alerts"]

    @get("/", summary="Alert history (with deliveries) and rules")
    async def index(self, store: NamedDependency[Store]) -> AlertList:
        return await alerts_context(store)

    @post("/rules", summary="Create a cost alert rule", guards=[requires_admin], status_code=201)
    async def create(self, store: NamedDependency[Store], data: JSONBody[RuleCreate]) -> AlertRule:
        return as_rule(await store.write(create_rule, data))

    @delete(
        "/rules/{rule_id:int}",
        summary="Delete (or, with history, disable) a rule",
        guards=[requires_admin],
        status_code=204,
    )
    async def remove(self, rule_id: RowId, store: NamedDependency[Store]) -> None:
        if not await store.write(delete_rule, rule_id):
            raise NotFoundException(f"alert rule {rule_id} not found")
