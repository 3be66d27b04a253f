"""How a handler answers htmx and plain browsers alike: fragment or page, redirect or header."""

from __future__ import annotations

from litestar import Request, Response
from litestar.response import Redirect

# The SSE event after which htmx's SSE extension stops reconnecting (``sse-close``).
STREAM_END = "stream_end"


def is_htmx(request: Request) -> bool:
    # A history restore (back button after an htmx swap) needs the whole page.
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


def redirect_to(request: Request, url: str) -> Response:
    """After a form post: htmx follows an HX-Redirect header, a plain form a 303."""
    if is_htmx(request):
        return Response(content=None, status_code=204, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)
