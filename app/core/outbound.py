"""Outbound calls with exponential backoff, every failed attempt written down.

All integrations (webhooks, SMTP, Hugging Face, W&B, Mistral files and
fine-tuning jobs) call out through :func:`call_with_retry`, built on
tenacity. Transient failures (connection errors, timeouts, 429, 5xx, SMTP
4xx) are retried with jittered exponential backoff; each failed attempt is
recorded in ``integration_errors`` with its subject (``export:3``,
``alert:7``…), so pages can show what went wrong even when a later attempt
succeeded, and nothing is lost when the last one fails.

These run on worker threads (the calls block), so recording uses the
store's blocking write, which queues onto the single writer thread.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import httpx2
import msgspec
from sqlite_utils import Database
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from app.core.integration_settings import IntegrationSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_ERROR_CHARS = 2000


class PermanentError(RuntimeError):
    """A failure that retrying cannot fix (bad request, missing configuration)."""


def _status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the network, a timeout, rate limiting or a server error."""
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return True
    # The mistralai SDK speaks httpx2; everything else here httpx.
    transport = (httpx.TransportError, httpx2.TransportError)
    if isinstance(exc, (*transport, ConnectionError, TimeoutError, socket.timeout)):
        return True
    status = _status_of(exc)
    if status is not None:
        return status == 429 or status >= 500
    # Errors of other clients (huggingface_hub, wandb) that wrap a network failure.
    return isinstance(exc, OSError) or "connection" in type(exc).__name__.lower()


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:MAX_ERROR_CHARS]


def record_error(
    db: Database,
    integration: str,
    action: str,
    subject: str,
    attempt: int,
    final: bool,
    error: str,
) -> None:
    db.table("integration_errors").insert(
        {
            "integration": integration,
            "action": action,
            "subject": subject,
            "attempt": attempt,
            "final": 1 if final else 0,
            "error": error[:MAX_ERROR_CHARS],
            "at": time.time(),
        }
    )


class IntegrationError(msgspec.Struct):
    """One failed attempt of a call to an outside service."""

    id: int
    integration: str | None
    action: str | None
    subject: str | None  # what it was for: export:3, alert:7, finetune:2, run:abc
    attempt: int | None
    final: int | None  # 1 when no retry followed
    error: str | None
    at: float | None


def errors_of(rows: list[dict[str, Any]]) -> list[IntegrationError]:
    return msgspec.convert(rows, list[IntegrationError])


def errors_for(db: Database, subject: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = db.execute(
        "select * from integration_errors where subject = ? order by at desc, id desc limit ?",
        [subject, limit],
    )
    return [dict(r) for r in rows.fetchall()]


def errors_about(db: Database, *prefixes: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest errors whose subject starts with one of ``prefixes`` (e.g. "export:")."""
    # A plain prefix comparison (not LIKE, where "_" is a wildcard), in SQL both databases read.
    where = " or ".join("substr(subject, 1, ?) = ?" for _ in prefixes)
    rows = db.execute(
        f"select * from integration_errors where {where} order by at desc, id desc limit ?",
        [*(v for prefix in prefixes for v in (len(prefix), prefix)), limit],
    )
    return [dict(r) for r in rows.fetchall()]


Recorder = Callable[[str, str, str, int, bool, str], None]


def store_recorder(store: Any) -> Recorder:
    """Record attempts through ``store`` from a worker thread (or None to only log)."""

    def record(
        integration: str, action: str, subject: str, attempt: int, final: bool, error: str
    ) -> None:
        try:
            store.write_sync(record_error, integration, action, subject, attempt, final, error)
        except Exception:  # noqa: BLE001 - logging an error must never raise a new one
            log.exception("could not record %s error for %s", integration, subject)

    return record


def call_with_retry(
    fn: Callable[[], T],
    *,
    integration: str,
    action: str,
    subject: str,
    settings: IntegrationSettings,
    record: Recorder | None = None,
    attempts: int | None = None,
) -> T:
    """Call ``fn`` until it succeeds, backing off on transient errors; re-raise the last one."""
    total = attempts or settings.retry_attempts

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            log.warning(
                "%s %s for %s failed (attempt %d): %s",
                integration,
                action,
                subject,
                state.attempt_number,
                describe(exc),
            )
            if record:
                record(integration, action, subject, state.attempt_number, False, describe(exc))

    retrying = Retrying(
        stop=stop_after_attempt(max(1, total)),
        wait=wait_exponential_jitter(
            multiplier=settings.retry_initial_s,
            max=settings.retry_max_s,
            jitter=settings.retry_initial_s / 2,
        ),
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except Exception as exc:
        attempt = retrying.statistics.get("attempt_number", 1)
        if record:
            record(integration, action, subject, attempt, True, describe(exc))
        raise
