"""The local model's process: ``python -m agents.providers.local_worker MODEL_JSON``.

The studio starts one per local model (see :mod:`agents.providers.local_process`)
so that llama.cpp, and whatever it does wrong (a segfault, an abort, running
out of memory, hanging), stays out of the web process. It loads the model,
says ``{"type": "ready"}``, then answers requests, one JSON object per line
on stdin, with replies one JSON object per line on stdout:

- ``{"op": "check", "id", "schema"}`` → ``{"id", "type": "checked", "reason"}``
  (``reason`` null when llama.cpp compiles the schema's grammar);
- ``{"op": "generate", "id", "messages", "tools", "temperature", "max_tokens"}``
  → ``{"id", "type": "text", "text"}`` per token of an answer, or
  ``{"id", "type": "tool_text", "name", "text"}`` per token of a tool call's
  arguments (the first with empty text, once the tool is chosen), then
  ``{"id", "type": "done", "completion"}`` or ``{"id", "type": "error", "message"}``;
- ``{"op": "cancel", "id"}`` stops that generation at its next token.

A failed load is ``{"type": "fatal", "message"}`` and exit status 1. When
stdin closes (the studio stopped or died) the process exits at once.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from typing import Any, TextIO

from agents.providers.local_model import LocalModel


class Channel:
    """Replies to the studio; one writer at a time, one line per message."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


class Requests:
    """Requests read from stdin by a thread, so that a cancel arrives mid-generation."""

    def __init__(self) -> None:
        self.pending: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lock = threading.Lock()
        self.running: dict[str, threading.Event] = {}
        self.cancelled: set[str] = set()

    def read_forever(self, source: TextIO) -> None:
        for line in source:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if message.get("op") == "cancel":
                with self.lock:
                    event = self.running.get(message.get("id"))
                    if event is not None:
                        event.set()
                    else:
                        self.cancelled.add(message.get("id"))
            else:
                self.pending.put(message)
        # The studio is gone or closed the pipe: nothing left to answer to.
        os._exit(0)

    def begin(self, request_id: str) -> threading.Event:
        event = threading.Event()
        with self.lock:
            self.running[request_id] = event
            if request_id in self.cancelled:
                self.cancelled.discard(request_id)
                event.set()
        return event

    def end(self, request_id: str) -> None:
        with self.lock:
            self.running.pop(request_id, None)


def serve(engine: Any, requests: Requests, channel: Channel) -> None:
    """Answer requests one at a time, for as long as the studio keeps stdin open."""
    while True:
        message = requests.pending.get()
        rid = str(message.get("id"))
        if message.get("op") == "check":
            reason = engine.check_schema(message["schema"])
            channel.send({"id": rid, "type": "checked", "reason": reason})
        else:
            generate(engine, rid, message, requests.begin(rid), channel)
            requests.end(rid)


def generate(
    engine: Any, rid: str, message: dict[str, Any], stopped: threading.Event, channel: Channel
) -> None:
    from agents.providers.local_engine import Cancelled

    try:
        completion = engine.generate(
            message["messages"],
            message.get("tools") or [],
            float(message.get("temperature", 0.7)),
            int(message.get("max_tokens", 512)),
            lambda text: channel.send({"id": rid, "type": "text", "text": text}),
            stopped,
            lambda name, text: channel.send(
                {"id": rid, "type": "tool_text", "name": name, "text": text}
            ),
        )
        channel.send({"id": rid, "type": "done", "completion": completion})
    except Cancelled:
        channel.send({"id": rid, "type": "error", "message": "cancelled"})
    except Exception as exc:  # noqa: BLE001 - reported to the run, the worker goes on
        channel.send({"id": rid, "type": "error", "message": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str]) -> int:
    spec = LocalModel(**json.loads(argv[1]))
    # The protocol owns the real stdout; whatever native code prints goes to stderr.
    channel = Channel(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        from agents.providers.local_engine import Engine

        engine = Engine(spec)
    except Exception as exc:  # noqa: BLE001 - the studio shows why the model did not load
        channel.send({"type": "fatal", "message": str(exc) or type(exc).__name__})
        return 1
    requests = Requests()
    threading.Thread(target=requests.read_forever, args=(sys.stdin,), daemon=True).start()
    channel.send({"type": "ready", "pid": os.getpid()})
    serve(engine, requests, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
