"""Local HTTP servers for tests: a threaded server on 127.0.0.1, scripted replies, JSON answers.

The fake Mistral, OpenAI and Hugging Face servers serve the same way: a
``ThreadingHTTPServer`` on a free loopback port in a daemon thread, JSON
bodies with a length. The chat fakes also answer from a script of replies and
keep every request body for assertions, echoing the last user message once
the script runs out.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: Any,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``handler``'s request with ``payload`` as JSON (and any extra ``headers``)."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def echo_text(body: dict[str, Any]) -> str:
    """What a chat fake answers once its script is spent: the last user message, echoed."""
    last_user = next(
        (m.get("content") for m in reversed(body.get("messages", [])) if m["role"] == "user"),
        "",
    )
    return f"Echo: {last_user}"


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) serving ``handler`` until ``stop``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedServer(LoopbackServer):
    """A loopback server whose requests take the next scripted reply (``add``), kept in order."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.script: deque[Any] = deque()
        self.requests: list[dict[str, Any]] = []
        # Reentrant: a fake that records more per request takes it around ``take``.
        self.lock = threading.RLock()
        super().__init__(handler)

    def add(self, *replies: Any) -> None:
        with self.lock:
            self.script.extend(replies)

    def take(self, body: dict[str, Any]) -> Any | None:
        """Keep ``body``; the next scripted reply, or None once the script is spent."""
        with self.lock:
            self.requests.append(body)
            return self.script.popleft() if self.script else None
