"""Server-sent events for background jobs (exports, fine-tunes) published on the broker.

A job's updates are published under a key such as ``export:3``. The stream
subscribes first, then sends the job as it is now (so an update committed in
between is never missed), then every update, and ends after a terminal
status with ``stream_end`` (HTML) so the htmx SSE extension stops. An update
that fails to render is logged and sent as a comment in its place: the page
keeps the last good state and the stream goes on to the end. A client that
leaves ends the stream (``app.web.sse``). Updates of a job on another replica
arrive through the relay (``app.store.postgres.relay``); when some may have
been missed, the job is read again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.core.text import safe_text
from app.store.live import RESYNC, Broker
from app.web.htmx import STREAM_END
from app.web.sse import sse_response

KEEPALIVE_S = 15.0

log = logging.getLogger("agentop.live")


def job_stream(
    broker: Broker,
    key: str,
    event: str,
    read: Callable[[], Awaitable[dict[str, Any] | None]],
    terminal: tuple[str, ...],
    render: Callable[[dict[str, Any]], str] | None = None,
) -> ServerSentEvent:
    def message(row: dict[str, Any]) -> ServerSentEventMessage:
        try:
            data = render(row) if render else json.dumps(row, ensure_ascii=False, default=str)
        except Exception:
            log.exception("could not render update %s of %s", event, key)
            return ServerSentEventMessage(data=None, comment=f"{event} could not be rendered")
        return ServerSentEventMessage(data=safe_text(data), event=event)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        with broker.subscribe(key) as sub:
            row = await read()
            if row is not None:
                yield message(row)
            while row is not None and row.get("status") not in terminal:
                live = await sub.next(KEEPALIVE_S)
                if live is None:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    continue
                if live.type == RESYNC or sub.overflowed:
                    # Updates may have been missed (another replica's, relayed): read it anew.
                    sub.overflowed = False
                    row = await read()
                    if row is None:
                        break
                else:
                    row = live.payload
                yield message(row)
        if render:
            yield ServerSentEventMessage(data="end", event=STREAM_END)

    return sse_response(messages())
