"""The one error ingest raises for a payload it cannot take, with the HTTP status to answer."""

from __future__ import annotations


class OTLPError(ValueError):
    """A payload that cannot be decoded; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
