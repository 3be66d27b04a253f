"""Errors of bad input from a user or API client, which every domain raises: a 4xx with the message."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user or API client; becomes a 4xx (``status``) with this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RunQueueFull(InputError):
    """Too many runs wait for a slot already; becomes a 429 with ``Retry-After``.

    An InputError so that every place that shows a form error (the new-run
    form, the CLI) shows this message too.
    """

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class ServerStopping(InputError):
    """The server is stopping and lets its runs finish: new ones go elsewhere (503)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)
