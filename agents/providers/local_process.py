"""The studio's side of a local model worker process (like ollama's runner).

:class:`ModelWorker` starts ``python -m agents.providers.local_worker`` for
one model on first use, keeps it for the next calls and talks to it in
line-delimited JSON over its stdin and stdout, on the event loop (asyncio
subprocess pipes): nothing here blocks and nothing here loads llama.cpp.

If the process dies (a segfault, an abort, the OOM killer) the request in
flight fails with "the local model process crashed (signal N)"; if it says
nothing for ``timeout_s`` it is killed and the request fails with "timed
out". Either way the next request starts a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import uuid
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

from agents.providers.base import ProviderError
from agents.providers.local_model import LocalModel

log = logging.getLogger(__name__)

# A reply line holds at most one completion; long answers must fit.
LINE_LIMIT = 16 * 1024 * 1024
# How long a cancelled generation may take to stop before its process is killed.
CANCEL_GRACE_S = 5.0
CLOSE_GRACE_S = 3.0
FINAL = ("done", "error", "checked")


class WorkerCrashed(ProviderError):
    """The worker process died during a request."""


class WorkerTimedOut(ProviderError):
    """The worker said nothing within its timeout and was killed."""


def _death(code: int | None, last_words: str) -> str:
    if code is not None and code < 0:
        try:
            name = f", {signal.Signals(-code).name}"
        except ValueError:
            name = ""
        text = f"the local model process crashed (signal {-code}{name})"
    else:
        text = f"the local model process exited unexpectedly (status {code})"
    return f"{text}: {last_words}" if last_words else text


class ModelWorker:
    """One model's worker process; requests take turns (one llama.cpp context)."""

    def __init__(self, spec: LocalModel) -> None:
        self.spec = spec
        self.timeout_s = spec.timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._ready: asyncio.subprocess.Process | None = None  # the process that said "ready"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._stderr: deque[str] = deque(maxlen=5)
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The running process's id (None before first use or after it died)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def loaded(self) -> bool:
        """True when the process runs with its model loaded (a call need not wait for a load)."""
        proc = self._proc
        return proc is not None and proc is self._ready and proc.returncode is None

    def _turns(self) -> asyncio.Lock:
        # Processes, pipes and locks belong to one event loop; a new loop
        # (another asyncio.run) starts afresh.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._kill()
            self._proc = None
            self._loop, self._lock = loop, asyncio.Lock()
        assert self._lock is not None
        return self._lock

    async def start(self) -> None:
        """Start the process and load the model, unless it runs already."""
        async with self._turns():
            await self._ensure_started()

    async def _ensure_started(self) -> asyncio.subprocess.Process:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            return proc
        fields = dataclasses.asdict(self.spec)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agents.providers.local_worker",
            json.dumps(fields),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
            # Its own session: a Ctrl-C meant for the server does not kill it mid-run.
            start_new_session=True,
        )
        self._proc = proc
        self._stderr.clear()
        self._stderr_task = asyncio.ensure_future(self._drain_stderr(proc))
        log.info("local model %s: worker process %s started", self.spec.name, proc.pid)
        ready = await self._read(proc)
        if ready.get("type") != "ready":
            await self._reap(proc)
            raise ProviderError(str(ready.get("message") or "the local model did not load"))
        self._ready = proc
        return proc

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        """Keep llama.cpp's last words for the crash message (and the pipe from filling)."""
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._stderr.append(line[:300])
                log.debug("local model %s: %s", self.spec.name, line)

    async def _read(self, proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.timeout_s)
        except TimeoutError:
            self._kill()
            raise WorkerTimedOut(
                f"the local model timed out after {self.timeout_s:g} s without output "
                "(its process was stopped and restarts on the next call)"
            ) from None
        except ValueError as exc:  # a line past LINE_LIMIT
            self._kill()
            raise ProviderError(f"the local model sent an oversized reply: {exc}") from None
        if not line:
            code = await self._reap(proc)
            raise WorkerCrashed(_death(code, self._stderr[-1] if self._stderr else ""))
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):
            self._kill()
            raise ProviderError(f"the local model process sent garbage: {line[:200]!r}")
        return reply

    async def _reap(self, proc: asyncio.subprocess.Process) -> int | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), CLOSE_GRACE_S)
        if self._stderr_task is not None:
            # Its last words may still be in the pipe.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
        return proc.returncode

    def _send(self, proc: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(message) + "\n").encode("utf-8"))

    async def request(self, message: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Send one request; yield its replies up to and including the final one."""
        async with self._turns():
            proc, rid, reply = await self._first_reply(message)
            finished = reply.get("type") in FINAL
            try:
                yield reply
                while not finished:
                    reply = await self._read(proc)
                    if reply.get("id") != rid:
                        continue  # the tail of an earlier, abandoned request
                    finished = reply.get("type") in FINAL
                    yield reply
            except ProviderError:
                finished = True  # the process is gone; nothing to stop
                raise
            finally:
                if not finished:
                    await self._stop(proc, rid)

    async def _first_reply(
        self, message: dict[str, Any]
    ) -> tuple[asyncio.subprocess.Process, str, dict[str, Any]]:
        """Send the request and wait for its first reply.

        A process that dies before answering anything may have died idle (the
        OOM killer, a signal) with its exit not yet seen here: the request is
        sent once more to a fresh process. A request that kills it again fails.
        """
        for attempt in (1, 2):
            proc = await self._ensure_started()
            rid = uuid.uuid4().hex
            try:
                self._send(proc, {**message, "id": rid})
                while True:
                    reply = await self._read(proc)
                    if reply.get("id") == rid:
                        return proc, rid, reply
            except (BrokenPipeError, ConnectionResetError):
                error = WorkerCrashed(_death(await self._reap(proc), ""))
            except WorkerCrashed as exc:
                error = exc
            except asyncio.CancelledError:
                await self._stop(proc, rid)
                raise
            if attempt == 2:
                raise error
            log.warning("local model %s: %s; retrying on a fresh process", self.spec.name, error)
        raise AssertionError("unreachable")

    async def _stop(self, proc: asyncio.subprocess.Process, rid: str) -> None:
        """Tell the worker to stop ``rid`` and wait for it; kill it if it does not stop."""

        async def drain() -> None:
            while True:
                reply = await self._read(proc)
                if reply.get("id") == rid and reply.get("type") in FINAL:
                    return

        # Not stopped in time, dead, or cancelled again: kill it rather than
        # leave a half-finished generation in the pipe for the next caller.
        try:
            self._send(proc, {"op": "cancel", "id": rid})
            await asyncio.wait_for(drain(), CANCEL_GRACE_S)
        except asyncio.CancelledError:
            self._kill()
            raise
        except Exception:  # noqa: BLE001 - see above
            self._kill()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Stop the process: close its stdin (it exits), kill it if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if self._loop is not asyncio.get_running_loop():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), CLOSE_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), CLOSE_GRACE_S)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
        log.info("local model %s: worker process %s stopped", self.spec.name, proc.pid)
