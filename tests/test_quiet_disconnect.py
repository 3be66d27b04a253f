"""A browser leaving a live stream is normal: the stream stops, the log stays quiet.

Reproduced on a real uvicorn server: a client asks for a finished run's events
and goes (a reset, as a dropped connection gives) just as the stored events
are read. The catch-up has hundreds of messages ready at once; without a turn
for the server between two, the stream wrote them all into the dead socket
and asyncio logged ``socket.send() raised exception.`` for each write past
the fifth (755 lines here).
"""

import asyncio
import logging
import socket
import struct
import threading

import httpx
import pytest

import app.store.live as live
from app.web.sse import until_client_leaves
from tests.conftest import wait_for_run
from tests.fake_mistral import Reply


def _reset(sock: socket.socket) -> None:
    """Close with a reset (linger 0), as a browser dropping a connection may."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def long_run(live_server, fake_mistral):
    """A finished run with hundreds of stored events (made on the live server: one app)."""
    fake_mistral.add(Reply(text="word " * 300, chunk_size=2))
    headers = {"X-API-Key": live_server.admin_key}
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        run_id = http.post("/api/runs", json={"prompt": "hi"}).json()["run_id"]
        return wait_for_run(http, run_id)["run"]


def test_a_client_leaving_a_run_stream_is_quiet(live_server, long_run, monkeypatch, caplog):
    loop = live_server.server.servers[0].get_loop()
    sock = socket.create_connection(("127.0.0.1", live_server.port), timeout=10)
    held, release = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        held.set()
        release.wait(10)

    read = live.events_after

    def read_then_leave(*args):  # type: ignore[no-untyped-def]
        """The stored events are read; the loop is held while the client goes, so the
        stream finds them all ready before the server has seen the reset."""
        rows = read(*args)
        if rows and not held.is_set():
            loop.call_soon_threadsafe(hold_the_loop)
            assert held.wait(10)
            _reset(sock)
            # Let these rows reach the loop's queue before it runs again.
            threading.Timer(0.3, release.set).start()
        return rows

    monkeypatch.setattr(live, "events_after", read_then_leave)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        request = (
            f"GET /api/runs/{long_run['id']}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-API-Key: {live_server.admin_key}\r\n\r\n"
        )
        sock.sendall(request.encode())
        assert held.wait(10), "the stream never read its stored events"
        assert release.wait(10)
        # The next request on the server is answered only once the loop has
        # run past the burst (or the stream's end).
        with httpx.Client(base_url=live_server.url) as http:
            assert http.get("/api/health").status_code == 200
    noisy = [r for r in caplog.records if "socket.send() raised exception" in r.getMessage()]
    assert noisy == [], f"{len(noisy)} warnings"


def test_a_stream_that_ends_is_closed_at_once():
    """The wrapped stream's own cleanup (unsubscribing) runs when the client goes."""
    asyncio.run(_close_early())


async def _close_early() -> None:
    closed = []

    async def messages():
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(True)

    stream = until_client_leaves(messages())
    assert await stream.__anext__() == 0
    await stream.aclose()
    assert closed == [True]
