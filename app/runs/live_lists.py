"""Live run lists: the dashboard's recent runs and the first page of /runs.

One server-sent event stream per open list follows every run through the
broker: a run that is created is prepended (``run_new``), a run whose status
or totals change replaces its row out of band (``run_update``), and on the
dashboard the KPIs are refreshed when a run ends. Only events that change a
run row are sent; tokens stay on the run page. A row that fails to render is
logged and sent as a placeholder, so one odd run never ends the stream.

A page reads its rows before its stream subscribes, so the stream begins
with the rows as they are once it has subscribed (``run_list``, which replaces
the table's body): a run created in between is not missed, and a browser that
reconnects catches up. After that the stream sends an update only for a row it
has sent, so an older run that is not on the page (the 11th running run on the
dashboard) sends nothing, and a run is never shown twice. A browser that leaves
ends its stream (``app.web.sse``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from jinja2 import Environment
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.core.text import safe_text
from app.runs.filters import RunFilter, filtered_runs
from app.store import Store
from app.store.events import TERMINAL_EVENTS
from app.store.live import Broker, LiveEvent
from app.store.runs import list_runs, totals
from app.web.render import render_live
from app.web.sse import sse_response

KEEPALIVE_S = 15.0
RECENT_ROWS = 10  # the dashboard's recent runs
PAGE_SIZE = 50  # the runs list's page

log = logging.getLogger("agentop.live")


def _changes_a_run_row(event: LiveEvent) -> bool:
    """Run rows only: not tokens, nor the progress of experiments or exports."""
    return event.run is not None and isinstance(event.run.get("id"), str)


async def first_rows(store: Store, compact: bool) -> list[dict[str, Any]]:
    """The rows a live list shows first: the dashboard's recent runs, or page 1 of /runs."""
    if compact:
        return await store.read(list_runs, RECENT_ROWS, 0)
    return await store.read(filtered_runs, RunFilter(), PAGE_SIZE, 0)


async def _list_events(
    store: Store, broker: Broker, jinja: Environment, compact: bool
) -> AsyncIterator[ServerSentEventMessage]:
    with broker.subscribe("*", accept=_changes_a_run_row) as sub:
        # Read after subscribing: a run created since is in these rows or in
        # the queue (or both, and then it is sent once, as an update).
        rows = await first_rows(store, compact)
        shown = {row["id"] for row in rows}
        data = render_live(jinja, "run_list", "tbody", runs=rows, compact=compact)
        yield ServerSentEventMessage(data=safe_text(data), event="run_list")
        while True:
            event = await sub.next(KEEPALIVE_S)
            if event is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                continue
            row: dict[str, Any] = {"run": event.run, "compact": compact}
            if event.type == "run_created" and event.run_id not in shown:
                shown.add(event.run_id)
                data = render_live(jinja, "run_new", "tr", **row)
                yield ServerSentEventMessage(data=safe_text(data), event="run_new")
                continue
            if event.run_id not in shown:
                continue  # not on this page: its row has no target here
            data = render_live(jinja, "run_update", **row)
            if compact and event.type in TERMINAL_EVENTS:
                data += await _kpis(store, jinja)
            yield ServerSentEventMessage(data=safe_text(data), event="run_update")


async def _kpis(store: Store, jinja: Environment) -> str:
    """The dashboard KPIs out of band; nothing if they cannot be read now (logged)."""
    try:
        kpis = await store.read(totals)
    except Exception:
        log.exception("could not read the dashboard totals for a live update")
        return ""
    return render_live(jinja, "_kpis", kpis=kpis, oob=True)


class LiveListsController(Controller):
    path = "/runs/live"
    include_in_schema = False

    @get("/")
    async def stream(
        self,
        store: NamedDependency[Store],
        broker: NamedDependency[Broker],
        jinja: NamedDependency[Environment],
        compact: Annotated[bool, QueryParameter()] = False,
    ) -> ServerSentEvent:
        return sse_response(_list_events(store, broker, jinja, compact))
