"""Server-sent event streams of a run: JSON for API clients, HTML partials for pages.

Both replay stored events after ``Last-Event-ID`` (or ``?after=``), then
follow the run live, and end after its terminal event. The HTML stream
renders each event with the partial of the same name and closes with a
``stream_end`` event that tells the htmx SSE extension to stop reconnecting.
An event whose partial fails to render is logged and sent as a placeholder;
the stream goes on.

The HTML stream also says what the run is doing (``app.runs.activity``): an
``activity`` message whenever that changes, and about once a second while
the run waits (a model loading, a model call, a tool call being written or
running), with the time elapsed. These messages are not stored events: they
carry no ``id``, so ``Last-Event-ID`` and exactly-once delivery of stored
events are untouched. The JSON stream has no such messages.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from jinja2 import Environment
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.core.text import safe_text
from app.runs.activity import Activity, advance, current_activity
from app.store import Store
from app.store.live import Broker, LiveEvent, follow_run
from app.web.htmx import STREAM_END
from app.web.params import MAX_ID
from app.web.render import render_live
from app.web.sse import sse_response
from app.web.views import event_context

ACTIVITY = "activity"
# How often a wait's elapsed time is sent, and how long silence lasts before a keep-alive.
TICK_S = 1.0
KEEPALIVE_S = 15.0

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


async def _json_messages(
    store: Store, broker: Broker, run_id: str, after: int
) -> AsyncIterator[ServerSentEventMessage]:
    async for event in follow_run(store, broker, run_id, after, KEEPALIVE_S):
        if event is None:
            yield ServerSentEventMessage(data=None, comment="keep-alive")
            continue
        yield ServerSentEventMessage(data=_json_data(event), event=event.type, id=str(event.seq))


class _ActivityLine:
    """The activity line of one HTML stream: when to send it, and its markup."""

    def __init__(self, env: Environment, run_id: str, state: Activity | None) -> None:
        self.env = env
        self.run_id = run_id
        self.state = state
        self.sent_key = state.key if state is not None else None
        self.sent_at = time.monotonic()

    def message(self) -> ServerSentEventMessage:
        self.sent_key = self.state.key if self.state is not None else None
        self.sent_at = time.monotonic()
        view = self.state.view() if self.state is not None else None
        html = render_live(self.env, ACTIVITY, run_id=self.run_id, activity=view, oob=True)
        return ServerSentEventMessage(data=safe_text(html), event=ACTIVITY)

    def after(self, event: LiveEvent) -> ServerSentEventMessage | None:
        """A message if ``event`` changed what the run does, or a wait's second went by."""
        payload = event.payload if isinstance(event.payload, dict) else {}
        self.state = advance(self.state, event.type, payload)
        key = self.state.key if self.state is not None else None
        if key != self.sent_key:
            return self.message()
        return self.tick()

    def tick(self) -> ServerSentEventMessage | None:
        """A message with the new elapsed time, while the run waits and a second went by."""
        if self.state is None or not self.state.ticking:
            return None
        if time.monotonic() - self.sent_at < TICK_S * 0.9:
            return None
        return self.message()


async def _html_messages(
    store: Store, broker: Broker, run_id: str, after: int, env: Environment
) -> AsyncIterator[ServerSentEventMessage]:
    render = html_renderer(env)
    # What the run was doing at the resume point: the page shows it at once.
    line = _ActivityLine(env, run_id, await store.read(current_activity, run_id, after))
    if line.state is not None:
        yield line.message()
    quiet_s = 0.0
    async for event in follow_run(store, broker, run_id, after, TICK_S):
        if event is None:
            quiet_s += TICK_S
            tick = line.tick()
            if tick is not None:
                quiet_s = 0.0
                yield tick
            elif quiet_s >= KEEPALIVE_S:
                quiet_s = 0.0
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            continue
        quiet_s = 0.0
        data = safe_text(render(event))
        yield ServerSentEventMessage(data=data, event=event.type, id=str(event.seq))
        update = line.after(event)
        if update is not None:
            yield update
    yield ServerSentEventMessage(data="end", event=STREAM_END)


def run_event_stream(
    store: Store,
    broker: Broker,
    run_id: str,
    after: int,
    html_env: Environment | None = None,
) -> ServerSentEvent:
    stream = (
        _html_messages(store, broker, run_id, after, html_env)
        if html_env is not None
        else _json_messages(store, broker, run_id, after)
    )
    return sse_response(stream)
