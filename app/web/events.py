"""Server-sent event streams of a run: JSON for API clients, HTML partials for pages.

Both replay stored events after ``Last-Event-ID`` (or ``?after=``), then
follow the run live, and end after its terminal event. The HTML stream
renders each event with the partial of the same name and closes with a
``stream_end`` event that tells the htmx SSE extension to stop reconnecting.
An event whose partial fails to render is logged and sent as a placeholder;
the stream goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from jinja2 import Environment
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.core.text import safe_text
from app.store import Store
from app.store.live import Broker, LiveEvent, follow_run
from app.web.params import MAX_ID
from app.web.render import render_live
from app.web.views import event_context

STREAM_END = "stream_end"

log = logging.getLogger("agentop.live")

# The element each swap target on the run page expects (see templates/run.html).
_PLACEHOLDER_TAGS = {"message": "li", "tool_call_started": "li"}


def resume_point(request: Request, after: int | None) -> int:
    """Where a stream resumes: after ``?after=`` or ``Last-Event-ID``, whichever is later.

    ``?after=`` is the caller's choice, so one out of range is a 400. The
    header is sent back by browsers as it was received; one that is not a
    sequence number we could have sent is ignored and the stream starts over.
    """
    if after is not None and after > MAX_ID:
        raise ValidationException(f"after must be at most {MAX_ID}")
    header = request.headers.get("last-event-id", "").strip()
    valid = header.isascii() and header.isdigit() and len(header) <= len(str(MAX_ID))
    from_header = int(header) if valid and int(header) <= MAX_ID else 0
    return max(from_header, after or 0)


def _json_data(event: LiveEvent) -> str:
    head: dict[str, Any] = {"seq": event.seq, "type": event.type}
    try:
        body: dict[str, Any] = {"payload": event.payload, "run": event.run}
        return json.dumps(head | body, ensure_ascii=False, default=str)
    except Exception:
        log.exception("could not encode %s event %s of run %s", event.type, event.seq, event.run_id)
        body = {"payload": None, "run": None, "error": "this event could not be encoded"}
        return json.dumps(head | body)


def html_renderer(env: Environment) -> Callable[[LiveEvent], str]:
    def render(event: LiveEvent) -> str:
        tag = _PLACEHOLDER_TAGS.get(event.type, "span")
        return render_live(env, event.type, tag, **event_context(event))

    return render


async def _messages(
    store: Store,
    broker: Broker,
    run_id: str,
    after: int,
    render: Callable[[LiveEvent], str],
    end_event: bool,
) -> AsyncIterator[ServerSentEventMessage]:
    async for event in follow_run(store, broker, run_id, after):
        if event is None:
            yield ServerSentEventMessage(data=None, comment="keep-alive")
            continue
        data = safe_text(render(event))
        yield ServerSentEventMessage(data=data, event=event.type, id=str(event.seq))
    if end_event:
        yield ServerSentEventMessage(data="end", event=STREAM_END)


def run_event_stream(
    store: Store,
    broker: Broker,
    run_id: str,
    after: int,
    html_env: Environment | None = None,
) -> ServerSentEvent:
    render: Callable[[LiveEvent], Any] = html_renderer(html_env) if html_env else _json_data
    stream = _messages(store, broker, run_id, after, render, end_event=html_env is not None)
    return ServerSentEvent(stream, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
