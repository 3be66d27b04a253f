"""The one error ingest raises for a payload it cannot take, with the HTTP status to answer.

An :class:`InputError`, so the app's error handler answers it like any bad
input: under ``/v1/`` as a ``google.rpc.Status`` in the request's encoding.
"""

from __future__ import annotations

from app.core.errors import InputError


class OTLPError(InputError):
    """A payload that cannot be decoded; ``status`` is 400, 413 (too large) or 415."""
