"""What the alerts page and GET /api/alerts show, built once for both.

The Structs are the declared response types of the alerts API; their fields
are the tables' columns (plus a rule's readable description and an alert's
deliveries), so the JSON is the rows as stored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.alerts.rules import describe_rule, list_alerts, list_rules
from app.core.outbound import IntegrationError, errors_about, errors_of
from app.store import Store


class AlertRule(msgspec.Struct):
    """A cost rule; which thresholds are set depends on its kind."""

    id: int
    name: str
    kind: str
    threshold_usd: float | None
    window_s: float | None
    multiplier: float | None
    baseline_runs: int | None
    webhook_url: str | None
    email_to: str | None
    enabled: int
    created_at: float


class DescribedRule(AlertRule):
    description: str  # the rule in words: "a run costs more than $0.50"


class Delivery(msgspec.Struct):
    """One channel an alert was (or is being) sent on."""

    id: int
    alert_id: int
    channel: str  # webhook | email
    target: str | None
    status: str | None  # pending | sent | failed
    attempts: int | None
    error: str | None
    sent_at: float | None


class Alert(msgspec.Struct):
    """One spike of one rule, with where it was delivered."""

    id: int
    rule_id: int
    fingerprint: str | None
    run_id: str | None
    value_usd: float | None
    threshold_usd: float | None
    message: str | None
    created_at: float | None
    resolved_at: float | None
    rule_name: str
    rule_kind: str
    deliveries: list[Delivery]


class AlertList(msgspec.Struct):
    alerts: list[Alert]
    rules: list[DescribedRule]
    errors: list[IntegrationError]


def as_rule(row: dict[str, Any]) -> AlertRule:
    return msgspec.convert(row, AlertRule)


def _errors_of_alerts(db: Any) -> list[dict[str, Any]]:
    return errors_about(db, "alert:")


async def alerts_context(store: Store) -> AlertList:
    """Alert history (newest first), the rules in words, and failed deliveries' errors."""
    rules = [{**rule, "description": describe_rule(rule)} for rule in await store.read(list_rules)]
    return AlertList(
        alerts=msgspec.convert(await store.read(list_alerts), list[Alert]),
        rules=msgspec.convert(rules, list[DescribedRule]),
        errors=errors_of(await store.read(_errors_of_alerts)),
    )
