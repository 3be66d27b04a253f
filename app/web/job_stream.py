"""Server-sent events for background jobs (exports, fine-tunes) published on the broker.

A job's updates are published under a key such as ``export:3``. The stream
subscribes first, then sends the job as it is now (so an update committed in
between is never missed), then every update, and ends after a terminal
status with ``stream_end`` (HTML) so the htmx SSE extension stops.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.live import Broker
from app.web.events import STREAM_END

KEEPALIVE_S = 15.0


def job_stream(
    broker: Broker,
    key: str,
    event: str,
    read: Callable[[], Awaitable[dict[str, Any] | None]],
    terminal: tuple[str, ...],
    render: Callable[[dict[str, Any]], str] | None = None,
) -> ServerSentEvent:
    def data(row: dict[str, Any]) -> str:
        return render(row) if render else json.dumps(row, default=str)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        with broker.subscribe(key) as sub:
            row = await read()
            if row is not None:
                yield ServerSentEventMessage(data=data(row), event=event)
            while row is not None and row["status"] not in terminal:
                live = await sub.next(KEEPALIVE_S)
                if live is None:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                row = live.payload
                yield ServerSentEventMessage(data=data(row), event=event)
        if render:
            yield ServerSentEventMessage(data="end", event=STREAM_END)

    return ServerSentEvent(
        messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
