"""Deliver an alert: a Slack-compatible webhook POST and/or an e-mail over SMTP.

Runs on a worker thread. Each delivery goes through ``call_with_retry``
(exponential backoff, every failed attempt recorded under ``alert:<id>``)
and ends ``sent`` or ``failed`` with its last error, shown on the alerts page.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

import httpx

from app.alerts.rules import finish_delivery, pending_deliveries
from app.core.integration_settings import IntegrationSettings
from app.core.outbound import PermanentError, call_with_retry, describe, store_recorder


def slack_payload(d: dict[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` for notifications, ``blocks`` for the layout."""
    return {
        "text": d["message"],
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f":rotating_light: {d['message']}"},
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": (
                            f"rule *{d['rule_name']}* ({d['rule_kind']}) · run `{d['run_id']}`"
                            f" · ${d['value_usd']:.6f} over ${d['threshold_usd']:.6f}"
                        ),
                    }
                ],
            },
        ],
    }


def post_webhook(d: dict[str, Any], settings: IntegrationSettings) -> None:
    response = httpx.post(d["target"], json=slack_payload(d), timeout=settings.http_timeout_s)
    if response.status_code >= 400:
        # 4xx other than 429 will not get better by retrying; raise_for_status keeps the status.
        response.raise_for_status()


def send_email(d: dict[str, Any], settings: IntegrationSettings) -> None:
    if not settings.smtp_host:
        raise PermanentError("SMTP is not configured (set AGENTOP_SMTP_HOST)")
    message = EmailMessage()
    message["Subject"] = f"[AgentOp] {d['message'][:120]}"
    message["From"] = settings.smtp_from
    message["To"] = d["target"]
    message.set_content(
        f"{d['message']}\n\nRule: {d['rule_name']} ({d['rule_kind']})\nRun: {d['run_id']}\n"
        f"Observed: ${d['value_usd']:.6f}\nThreshold: ${d['threshold_usd']:.6f}\n"
    )
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.http_timeout_s
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(message)


SENDERS = {"webhook": post_webhook, "email": send_email}


def deliver_alerts(store: Any, alert_ids: list[int], settings: IntegrationSettings) -> list[dict]:
    """Send every pending delivery of these alerts; return them with their outcome."""
    record = store_recorder(store)
    results = []
    for d in store.read_sync(pending_deliveries, alert_ids):
        attempts = 0

        def send(d: dict[str, Any] = d) -> None:
            nonlocal attempts
            attempts += 1
            SENDERS[d["channel"]](d, settings)

        try:
            call_with_retry(
                send,
                integration=d["channel"],
                action="alert",
                subject=f"alert:{d['alert_id']}",
                settings=settings,
                record=record,
            )
            store.write_sync(finish_delivery, d["id"], True, attempts, None)
            results.append({**d, "status": "sent", "attempts": attempts})
        except Exception as exc:  # noqa: BLE001 - recorded, shown on the alerts page
            store.write_sync(finish_delivery, d["id"], False, attempts, describe(exc))
            results.append({**d, "status": "failed", "attempts": attempts, "error": describe(exc)})
    return results
