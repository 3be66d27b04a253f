"""A local HTTP server that speaks the Mistral chat completions API.

Tests point the real ``mistralai`` SDK at it (``server_url``). Each request
takes the next scripted reply; with no script left it answers by echoing the
last user message. Replies can stream text in chunks (with a delay between
them), request tool calls, report usage, or fail with an HTTP status such as
429 or 500. Every request body is kept in ``requests`` for assertions.

A streamed reply can also misbehave on cue (``Reply.fault``), the way real
OpenAI-compatible servers do after answering 200:

- ``"empty"``: no event at all, the connection just closes;
- ``"cut"``: the text, then the stream ends with no finish reason and no [DONE];
- ``"no_usage"``: a normal stream whose chunks never carry ``usage``;
- ``"error_data"``: the text, then ``data: {"error": {...}}`` (llama.cpp's server);
- ``"error_event"``: the text, then ``event: error`` with that error (OpenAI style);
- ``"drop"``: a chunked body whose connection drops mid-chunk (a truncated body).

``finish_reason`` overrides the final chunk's reason ("length", "model_length",
"error"); ``error_message`` is the provider's words in error bodies and events.

Tool calls stream whole, in one chunk, as Mistral sends them; with
``args_chunk_size`` each call's JSON arguments come in pieces of that many
characters instead (OpenAI-compatible servers do so), ``delay_s`` apart.
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
    """One scripted answer. ``status`` other than 200 sends an error body instead."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments"}
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunk_size: int = 4
    delay_s: float = 0.0
    usage: tuple[int, int] | None = None  # (prompt, completion); default: word counts
    fault: str | None = None  # empty | cut | no_usage | error_data | error_event | drop
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"
    error_message: str | None = None  # default: "fake error <status>"
    args_chunk_size: int | None = None  # stream tool-call arguments in pieces this long


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages)


class FakeMistral(ScriptedServer):
    def __init__(self) -> None:
        # Other Mistral APIs (files, fine-tuning: tests/fake_mistral_ft.py) plug in here:
        # route(handler, method, path, raw body) -> True when it answered.
        self.routes: list[Any] = []
        super().__init__(self._handler())

    def _next(self, body: dict[str, Any]) -> Reply:
        return self.take(body) or Reply(text=echo_text(body))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send_json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                send_json(self, status, payload, headers)

            def _extra(self, method: str, raw: bytes) -> bool:
                return any(route(self, method, self.path, raw) for route in fake.routes)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if not self._extra("GET", b""):
                    self._send_json(404, {"message": f"no route {self.path}"}, {})

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.headers.get("Authorization", "").startswith("Bearer "):
                    self._send_json(401, {"message": "Unauthorized"}, {})
                    return
                if self.path.rstrip("/") != "/v1/chat/completions" and self._extra("POST", raw):
                    return
                body = json.loads(raw or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send_json(404, {"message": f"no route {self.path}"}, {})
                    return
                reply = fake._next(body)
                if reply.status != 200:
                    self._send_json(
                        reply.status,
                        {
                            "object": "error",
                            "message": reply.error_message or f"fake error {reply.status}",
                            "type": "fake",
                            "code": reply.status,
                        },
                        reply.headers,
                    )
                    return
                if body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._send_json(200, self._completion(body, reply), reply.headers)

            def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, int]:
                prompt, completion = reply.usage or (
                    _words(body.get("messages", [])) + 10,
                    max(1, len(reply.text.split())) + 5 * len(reply.tool_calls),
                )
                return {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }

            def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
                return [
                    {
                        "id": c.get("id") or uuid.uuid4().hex[:9],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                        "index": i,
                    }
                    for i, c in enumerate(reply.tool_calls)
                ]

            def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
                message: dict[str, Any] = {"role": "assistant", "content": reply.text}
                if reply.tool_calls:
                    message["tool_calls"] = self._tool_calls(reply)
                return {
                    "id": uuid.uuid4().hex,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                        }
                    ],
                    "usage": self._usage(body, reply),
                }

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                chunked = reply.fault == "drop"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                cid = uuid.uuid4().hex
                model = body.get("model")

                def write(raw: bytes) -> None:
                    if chunked:
                        raw = b"%x\r\n%s\r\n" % (len(raw), raw)
                    self.wfile.write(raw)
                    self.wfile.flush()

                def send(choice: dict[str, Any], usage: dict[str, int] | None = None) -> None:
                    chunk: dict[str, Any] = {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [choice],
                    }
                    if usage:
                        chunk["usage"] = usage
                    write(f"data: {json.dumps(chunk)}\n\n".encode())

                if reply.fault == "empty":
                    return
                send(
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                )
                text = reply.text
                for i in range(0, len(text), reply.chunk_size):
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    send(
                        {
                            "index": 0,
                            "delta": {"content": text[i : i + reply.chunk_size]},
                            "finish_reason": None,
                        }
                    )
                if reply.tool_calls and reply.args_chunk_size:
                    self._stream_tool_calls(reply, send)
                elif reply.tool_calls:
                    send(
                        {
                            "index": 0,
                            "delta": {"tool_calls": self._tool_calls(reply)},
                            "finish_reason": None,
                        }
                    )
                if self._misbehave(reply):
                    return
                finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
                send(
                    {"index": 0, "delta": {"content": ""}, "finish_reason": finish},
                    None if reply.fault == "no_usage" else self._usage(body, reply),
                )
                write(b"data: [DONE]\n\n")
                if chunked:
                    write(b"")  # the terminating zero-length chunk

            def _stream_tool_calls(self, reply: Reply, send: Any) -> None:
                """Each call's id and name first, then its arguments piece by piece."""
                size = reply.args_chunk_size or 1
                for call in self._tool_calls(reply):
                    i, args = call["index"], call["function"]["arguments"]
                    head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                    send({"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None})
                    for start in range(0, len(args), size):
                        if reply.delay_s:
                            time.sleep(reply.delay_s)
                        piece = {"name": "", "arguments": args[start : start + size]}
                        send(
                            {
                                "index": 0,
                                "delta": {"tool_calls": [{"index": i, "function": piece}]},
                                "finish_reason": None,
                            }
                        )

            def _misbehave(self, reply: Reply) -> bool:
                """End the stream the way ``reply.fault`` says; True when it ended here."""
                error = {
                    "error": {
                        "message": reply.error_message or "fake error mid-stream",
                        "type": "server_error",
                        "code": 500,
                    }
                }
                if reply.fault == "cut":
                    return True  # the connection closes: no finish reason, no [DONE]
                if reply.fault == "error_data":
                    self.wfile.write(f"data: {json.dumps(error)}\n\n".encode())
                    return True
                if reply.fault == "error_event":
                    self.wfile.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
                    return True
                if reply.fault == "drop":
                    # A chunk header promising more bytes than ever arrive.
                    self.wfile.write(b'400\r\ndata: {"id": "trunc')
                    self.wfile.flush()
                    return True
                return False

        return Handler
