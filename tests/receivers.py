"""Local stand-ins for the outside world the integrations talk to: a webhook receiver and an
SMTP server (aiosmtpd), both on 127.0.0.1; and ``wait_until``, to wait for what they receive
(and for anything else a test has to wait for)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

T = TypeVar("T")


class WebhookReceiver:
    """Records JSON POSTs; answers ``fail_first`` of them with ``fail_status``."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail_first, self.fail_status = fail_first, fail_status
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.calls += 1
                if receiver.calls <= receiver.fail_first:
                    self.send_response(receiver.fail_status)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"oops!")
                    return
                receiver.posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.original_content or envelope.content)
        self.messages.append(
            {"to": envelope.rcpt_tos, "from": envelope.mail_from, "message": message}
        )
        return "250 OK"


class SMTPServer:
    def __init__(self, port: int) -> None:
        self.inbox = _Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port)
        self.port = port

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Any]:
        return self.inbox.messages


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    The one polling helper of the tests (the product streams; tests may poll).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
