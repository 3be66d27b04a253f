"""A local HTTP server that speaks the OpenAI chat completions API.

Tests point the real ``openai`` SDK at it (``base_url=f"{fake.url}/v1"``) so that
OpenTelemetry instrumentations of that SDK (openinference-instrumentation-openai,
opentelemetry-instrumentation-openai-v2) produce their real spans and log records.
Each request takes the next scripted reply; with no script left it answers by
echoing the last user message. A reply is text, tool calls, or both, with a fixed
usage. Streaming answers are SSE ``data:`` chunks ending in ``data: [DONE]``; with
``stream_options.include_usage`` a last chunk with no choices carries the usage, as
OpenAI does. Every request body is kept in ``requests`` for assertions.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import ScriptedServer, echo_text, send_json


@dataclass
class Reply:
    """One scripted answer: ``tool_calls`` items are {"name", "arguments", "id"?}."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: tuple[int, int] = (11, 7)  # (prompt, completion)
    chunk_size: int = 8


class FakeOpenAI(ScriptedServer):
    def __init__(self) -> None:
        self.response_ids: list[str] = []
        super().__init__(self._handler())

    def _next(self, body: dict[str, Any]) -> tuple[Reply, str]:
        response_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        with self.lock:  # ids in the order of ``requests``
            self.response_ids.append(response_id)
            reply = self.take(body)
        return reply or Reply(text=echo_text(body)), response_id

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send_json(self, status: int, payload: Any) -> None:
                send_json(self, status, payload)

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.headers.get("Authorization", "").startswith("Bearer "):
                    self._send_json(401, {"error": {"message": "Unauthorized"}})
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(raw or b"{}")
                reply, response_id = fake._next(body)
                if body.get("stream"):
                    self._stream(body, reply, response_id)
                else:
                    self._send_json(200, self._completion(body, reply, response_id))

            def _completion(self, body: dict[str, Any], reply: Reply, rid: str) -> dict[str, Any]:
                message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
                if reply.tool_calls:
                    message["tool_calls"] = _tool_calls(reply)
                return {
                    "id": rid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "system_fingerprint": "fp_fake",
                    "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
                    "usage": _usage(reply),
                }

            def _stream(self, body: dict[str, Any], reply: Reply, rid: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

                def send(choices: list[dict[str, Any]], usage: Any = None) -> None:
                    chunk = {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": body.get("model"),
                        "choices": choices,
                        "usage": usage,
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()

                def delta(d: dict[str, Any], finish: str | None = None) -> None:
                    send([{"index": 0, "delta": d, "finish_reason": finish}])

                delta({"role": "assistant", "content": ""})
                for i in range(0, len(reply.text), reply.chunk_size):
                    delta({"content": reply.text[i : i + reply.chunk_size]})
                for call in _tool_calls(reply):
                    delta({"tool_calls": [call]})
                delta({}, _finish(reply))
                if (body.get("stream_options") or {}).get("include_usage"):
                    send([], _usage(reply))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "id": c.get("id") or f"call_{uuid.uuid4().hex[:9]}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
        }
        for i, c in enumerate(reply.tool_calls)
    ]
