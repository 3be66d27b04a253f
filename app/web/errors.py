"""Errors as people and clients see them: an error page for browsers, JSON for the API.

Bad input is a 400 with its message, a full run queue a 429 and a store that
cannot write a 503, both with ``Retry-After``; nothing unexpected leaks more
than "internal server error" (the log has the traceback).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.core.errors import InputError, RunQueueFull
from app.core.rpc_status import status_body
from app.store.db import StorageUnavailable

log = logging.getLogger("agentop")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/v1/", "/schema")) and "text/html" in (
        request.headers.get("accept", "")
    )


def _error_response(request: Request, status: int, message: str, extra: Any = None) -> Response:
    if request.url.path.startswith("/v1/"):
        # OTLP receivers answer a google.rpc.Status in the request's encoding.
        content, media_type = status_body(status, message, request.headers.get("content-type", ""))
        return Response(content, status_code=status, media_type=media_type)
    if _wants_html(request):
        return Template(
            "error.html", context={"status": status, "message": message}, status_code=status
        )
    body: dict[str, Any] = {"status_code": status, "detail": message}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, media_type=MediaType.JSON)


def handle_input_error(request: Request, exc: InputError) -> Response:
    return _error_response(request, exc.status, str(exc))


def handle_queue_full(request: Request, exc: RunQueueFull) -> Response:
    response = _error_response(request, 429, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def handle_storage_unavailable(request: Request, exc: StorageUnavailable) -> Response:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    response = _error_response(request, 503, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def handle_overflow(request: Request, exc: OverflowError) -> Response:
    # A number that validated as an int but does not fit SQLite's 64 bits.
    return _error_response(request, 400, "a number in the request is out of range")


# Litestar turns malformed JSON into a 400 itself, but not the two errors its
# decoder (msgspec) raises past it: bytes that are not UTF-8, and nesting
# deeper than the interpreter's recursion limit.
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def handle_undecodable_body(request: Request, exc: UnicodeDecodeError) -> Response:
    if request.method not in _BODY_METHODS:
        return handle_unexpected(request, exc)
    return _error_response(request, 400, "the request body is not valid UTF-8")


def handle_too_deep(request: Request, exc: RecursionError) -> Response:
    # Only the decoders' own messages (msgspec, json): any other RecursionError is a bug of ours.
    decoding = any(word in str(exc) for word in ("deserializ", "decoding a JSON"))
    if request.method not in _BODY_METHODS or not decoding:
        return handle_unexpected(request, exc)
    return _error_response(request, 400, "the request body is nested too deeply")


def handle_http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 401 and not request.url.path.startswith(("/api/", "/v1/", "/schema")):
        # People are sent to the login page; API clients get the 401.
        target = "/login?" + urlencode({"next": request.url.path})
        if request.headers.get("hx-request") == "true":
            return Response(content=None, status_code=401, headers={"HX-Redirect": target})
        if _wants_html(request):
            return Redirect(target, status_code=303)
    return _error_response(request, exc.status_code, exc.detail, getattr(exc, "extra", None))


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_response(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    InputError: handle_input_error,
    RunQueueFull: handle_queue_full,
    StorageUnavailable: handle_storage_unavailable,
    OverflowError: handle_overflow,
    UnicodeDecodeError: handle_undecodable_body,
    RecursionError: handle_too_deep,
    HTTPException: handle_http_error,
    NotFoundException: handle_http_error,
    Exception: handle_unexpected,
}
