"""Server-sent event streams of a run: JSON for API clients, HTML partials for pages.

Both replay stored events after ``Last-Event-ID`` (or ``?after=``), then
follow the run live, and end after its terminal event. The HTML stream
renders each event with the partial of the same name and closes with a
``stream_end`` event that tells the htmx SSE extension to stop reconnecting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from jinja2 import Environment
from litestar import Request
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.live import Broker, LiveEvent, follow_run
from app.render import render_partial
from app.store import Store
from app.web.views import event_context

STREAM_END = "stream_end"


def resume_point(request: Request, after: int | None) -> int:
    header = request.headers.get("last-event-id", "")
    from_header = int(header) if header.strip().isdigit() else 0
    return max(from_header, after or 0)


def _json_data(event: LiveEvent) -> str:
    return json.dumps(
        {"seq": event.seq, "type": event.type, "payload": event.payload, "run": event.run},
        ensure_ascii=False,
        default=str,
    )


def html_renderer(env: Environment) -> Callable[[LiveEvent], str]:
    def render(event: LiveEvent) -> str:
        return render_partial(env, event.type, **event_context(event))

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
            yield ServerSentEventMessage(comment="keep-alive")
            continue
        yield ServerSentEventMessage(data=render(event), event=event.type, id=str(event.seq))
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
