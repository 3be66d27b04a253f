"""Alerts: the page (rules, history, delivery errors) and its JSON twin under /api/alerts.

Everyone signed in reads alerts; only admins manage rules, since a rule makes
the server POST to a URL and send e-mail on the team's behalf.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, URLEncodedBody
from litestar.response import Redirect, Template

from app.alerts.rules import (
    KINDS,
    RuleError,
    create_rule,
    delete_rule,
    describe_rule,
    list_alerts,
    list_rules,
    set_enabled,
)
from app.auth.guards import requires_admin
from app.core.outbound import errors_about
from app.runs.runner import InputError
from app.store import Store
from app.web.params import RowId


def _errors_of_alerts(db: Any) -> list[dict[str, Any]]:
    return errors_about(db, "alert:")


async def _context(store: Store) -> dict[str, Any]:
    rules = await store.read(list_rules)
    for rule in rules:
        rule["description"] = describe_rule(rule)
    return {
        "rules": rules,
        "alerts": await store.read(list_alerts),
        "errors": await store.read(_errors_of_alerts),
        "kinds": KINDS,
        "nav": "alerts",
    }


class AlertsPage(Controller):
    path = "/alerts"
    include_in_schema = False

    @get("/")
    async def index(self, store: NamedDependency[Store]) -> Template:
        return Template("alerts.html", context={**await _context(store), "values": {}, "error": ""})

    @post("/rules", guards=[requires_admin], status_code=303)
    async def create(
        self, store: NamedDependency[Store], data: URLEncodedBody[dict[str, Any]]
    ) -> Response | Template:
        try:
            await store.write(create_rule, data)
        except RuleError as exc:
            context = {**await _context(store), "values": data, "error": str(exc)}
            return Template("alerts.html", context=context, status_code=422)
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
    async def index(self, store: NamedDependency[Store]) -> dict[str, Any]:
        context = await _context(store)
        return {"alerts": context["alerts"], "rules": context["rules"], "errors": context["errors"]}

    @post("/rules", summary="Create a cost alert rule", guards=[requires_admin], status_code=201)
    async def create(
        self, request: Request, store: NamedDependency[Store], data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        try:
            return await store.write(create_rule, data)
        except RuleError as exc:
            raise InputError(str(exc)) from exc

    @delete(
        "/rules/{rule_id:int}",
        summary="Delete (or, with history, disable) a rule",
        guards=[requires_admin],
        status_code=204,
    )
    async def remove(self, rule_id: RowId, store: NamedDependency[Store]) -> None:
        if not await store.write(delete_rule, rule_id):
            raise NotFoundException(f"alert rule {rule_id} not found")
