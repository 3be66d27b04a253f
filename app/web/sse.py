"""Server-sent event responses: unbuffered, and ending once their client has gone.

Every stream of the studio (a run's events, the live lists, job and
experiment progress) is answered by :func:`sse_response`, so each gets the
same headers and the same handling of a client that leaves.

A client leaving a stream is normal (a tab closed, a page left). Litestar
notices it: its streaming response listens for uvicorn's ``http.disconnect``
and cancels the stream, and uvicorn drops what is sent after the connection
is lost. Both only happen when the event loop gets a turn. A stream that has
several messages ready at once (a burst of run updates, a catch-up of stored
events) never gives it one, so it goes on writing to a dead socket, and
asyncio logs ``socket.send() raised exception.`` for each write past the
fifth: hundreds of lines after one closed tab.

:func:`until_client_leaves` gives the loop that turn after every message
(``anyio.lowlevel.checkpoint``, which also raises at once if the stream was
cancelled), so a lost connection is seen after the write that found it and
the stream ends there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

from anyio.lowlevel import checkpoint
from litestar.response import ServerSentEvent, ServerSentEventMessage

T = TypeVar("T")

# No caching, and no buffering by a proxy (nginx honours X-Accel-Buffering): events go out as sent.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def until_client_leaves(messages: AsyncIterator[T]) -> AsyncIterator[T]:
    """``messages``, with a turn for the server between two, to see a client leave."""
    try:
        async for message in messages:
            yield message
            await checkpoint()
    finally:
        # Closed here, not left to the garbage collector: the stream's own
        # ``finally`` (unsubscribing from the broker) runs when the client goes.
        aclose = getattr(messages, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(messages: AsyncIterator[ServerSentEventMessage]) -> ServerSentEvent:
    """The response of an SSE stream: ``messages`` until they end or the client leaves."""
    return ServerSentEvent(until_client_leaves(messages), headers=HEADERS)
