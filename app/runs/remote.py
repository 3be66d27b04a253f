"""Where ``agentop run`` / ``agentop replay`` run: through the server beside them, or here.

When a live ``serve`` process is registered in the database (a fresh
heartbeat and a URL), the CLI does not run the agent itself: two processes
would then write to one store, and the server's live pages, cost alerts and
W&B metrics would never hear of the run. It starts the run through the JSON
API and streams ``GET /api/runs/{id}/events`` to the terminal instead.

The credential is ``AGENTOP_API_KEY`` when set; otherwise a member key made
for this one command in the store (whoever can write the database can make
keys anyway) and deleted when the command ends. Its secret never leaves this
process. Keys left by a CLI that was killed are deleted by the next one.

With no live server the command runs the agent in-process, registered as a
``cli`` process so that a server starting meanwhile leaves its runs alone.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlite_utils import Database

from app.auth.keys import create_key, revoke_key
from app.core.settings import ClientSettings, Settings
from app.runs.process_registry import ProcessRegistration
from app.runs.source import CLIENT_HEADER
from app.runs.terminal import print_event
from app.store import Store
from app.store.backend import INTEGRITY_ERRORS
from app.store.events import TERMINAL_EVENTS
from app.store.processes import CLI, LEASE_S, live_servers

CLI_KEY_PREFIX = "agentop-cli:"
# A stream cut off before the run ended (a proxy, a restart) is resumed this often.
RECONNECTS = 5


class RemoteError(RuntimeError):
    """The server refused or failed a request; the message is for the terminal."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@asynccontextmanager
async def cli_process(settings: Settings) -> AsyncIterator[tuple[Store, ProcessRegistration]]:
    """The store, and this command registered as a ``cli`` process while it lasts."""
    store = Store(settings.db_path, url=settings.database_url)
    process = ProcessRegistration(store, CLI)
    try:
        await process.start()
        yield store, process
    finally:
        await process.stop()
        store.close()


async def find_server(store: Store) -> dict[str, Any] | None:
    """The live serve process to send runs to: on this host if there is one, else any."""
    servers = await store.read(live_servers, time.time())
    here = socket.gethostname()
    servers.sort(key=lambda s: s["host"] != here)  # stable: freshest first within each
    return servers[0] if servers else None


def _make_cli_key(db: Database, process_id: str, now: float) -> str:
    # Keys of CLIs that died before deleting theirs: no live process row left.
    stale = db.execute(
        "select name from api_keys where name like ? and substr(name, ?) not in"
        " (select id from processes where heartbeat_at > ?)",
        [CLI_KEY_PREFIX + "%", len(CLI_KEY_PREFIX) + 1, now - LEASE_S],
    ).fetchall()
    for (name,) in stale:
        _drop_cli_key(db, name)
    return create_key(db, CLI_KEY_PREFIX + process_id, "member")[1]


def _drop_cli_key(db: Database, name: str) -> None:
    """Delete the key; revoke it instead if other rows still point at it."""
    try:
        db.execute("delete from api_keys where name = ?", [name])
    except INTEGRITY_ERRORS:
        revoke_key(db, name)


@asynccontextmanager
async def credential(store: Store, process_id: str) -> AsyncIterator[str]:
    """``AGENTOP_API_KEY`` if set, else a member key deleted when the block ends."""
    configured = ClientSettings.from_env().api_key.strip()
    if configured:
        yield configured
        return
    key = await store.write(_make_cli_key, process_id, time.time())
    try:
        yield key
    finally:
        await store.write(_drop_cli_key, CLI_KEY_PREFIX + process_id)


def client(url: str, key: str) -> httpx.AsyncClient:
    # A live stream sends a keep-alive every 15 s: a minute of silence means it is dead.
    return httpx.AsyncClient(
        base_url=url,
        headers={"X-API-Key": key, CLIENT_HEADER: "cli"},
        timeout=httpx.Timeout(30.0, read=60.0),
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail or body)


async def call(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """One JSON request; a 4xx/5xx becomes a RemoteError with the server's message."""
    response = await http.request(method, path, **kwargs)
    if response.status_code >= 400:
        code = 2 if response.status_code < 500 else 1
        raise RemoteError(f"{_detail(response)} (HTTP {response.status_code})", code)
    return response.json()


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """(id, data) of each server-sent event; comments (keep-alives) are skipped."""
    event_id: str | None = None
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield event_id, "\n".join(data)
            event_id, data = None, []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


async def follow(
    http: httpx.AsyncClient,
    run_id: str,
    on_event: Callable[[str, dict[str, Any]], None],
) -> None:
    """Hand every event of the run to ``on_event`` until its terminal event.

    A stream that breaks off is resumed after the last event seen
    (Last-Event-ID), so nothing is printed twice or missed.
    """
    last = 0
    for attempt in range(RECONNECTS + 1):
        headers = {"Last-Event-ID": str(last)} if last else {}
        try:
            async with http.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise RemoteError(f"{_detail(r)} (HTTP {r.status_code})", 1)
                async for event_id, data in _sse(r.aiter_lines()):
                    event = json.loads(data)
                    last = int(event_id or event["seq"])
                    on_event(event["type"], event["payload"])
                    if event["type"] in TERMINAL_EVENTS:
                        return
        except httpx.TransportError as exc:
            if attempt == RECONNECTS:
                raise RemoteError(f"lost the server's stream: {exc}", 1) from None
        await asyncio.sleep(min(2.0**attempt, 10.0) * 0.5)
    raise RemoteError("the server's stream kept ending before the run did", 1)


@dataclass(frozen=True)
class Started:
    created: dict[str, Any]  # the server's answer to the start (run id, diff id…)
    final: dict[str, Any]  # the run row once it ended


async def start_and_follow(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], heading: Callable[[dict], str]
) -> Started | None:
    """Start a run with ``POST path``, announce it, print its events until it ends.

    None when the server did not answer the start, so nothing was started and
    the caller may run it here instead; a refusal raises RemoteError.
    """
    try:
        created = await call(http, "POST", path, json=body)
    except httpx.ConnectError:
        return None
    run = (await call(http, "GET", f"/api/runs/{created['run_id']}"))["run"]
    where = str(http.base_url).rstrip("/")
    print(f"{heading(run)} · {run['model']} ({run['provider']}) · on {where}", file=sys.stderr)
    final = await follow_to_end(
        http, run["id"], lambda kind, payload: print_event(kind, payload, sys.stdout)
    )
    return Started(created, final)


async def follow_to_end(
    http: httpx.AsyncClient, run_id: str, on_event: Callable[[str, dict[str, Any]], None]
) -> dict[str, Any]:
    """Follow the run to its end and return its final row.

    Stopping the command (Ctrl-C) stops following only: the run is the
    server's and goes on there.
    """
    try:
        await follow(http, run_id, on_event)
    except asyncio.CancelledError:
        page = str(http.base_url.join(f"/runs/{run_id}"))
        print(f"\nstopped following; the run goes on in the studio: {page}", file=sys.stderr)
        raise
    return (await call(http, "GET", f"/api/runs/{run_id}"))["run"]
