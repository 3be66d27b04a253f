"""Local provider: GGUF models run by ``llama-cpp-python`` in worker processes.

Each configured model runs in a process of its own
(:mod:`agents.providers.local_worker`), started on first use and reused, so
a native crash or a hang fails one call, never the studio; this module only
talks to it over a pipe and never imports ``llama_cpp``.

Tool calls are produced inside the worker with JSON-schema-constrained
generation (:mod:`agents.providers.local_engine`). Before a tool is offered
to a model its schema is made grammar-safe (:mod:`.local_schema`) and
compiled once by that model's worker; a schema llama.cpp still refuses
leaves the tool out for that model, with the reason logged.

A call streams the answer's text, or a tool call's arguments as
:class:`ToolCallChunk` pieces. ``warm_up`` starts a model's worker before a
call and says so (:class:`ModelLoading`, :class:`ModelLoaded`), unless its
model is loaded already.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from agents.providers.base import (
    Completion,
    GenerationParams,
    ModelLoaded,
    ModelLoading,
    ProviderError,
    StreamItem,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
)
from agents.providers.local_model import SMOLLM2_FILE, LocalModel, smollm2_path
from agents.providers.local_process import ModelWorker, WorkerCrashed, WorkerTimedOut
from agents.providers.local_schema import SchemaRefused, grammar_safe_schema

__all__ = ["SMOLLM2_FILE", "LocalModel", "LocalProvider", "smollm2_path"]

log = logging.getLogger(__name__)


class LocalProvider:
    """Runs configured GGUF models, each in its worker process."""

    name = "local"

    def __init__(self, models: list[LocalModel]) -> None:
        self.models = {m.name: m for m in models}
        self._workers: dict[str, ModelWorker] = {}
        # (model, tool, grammar-safe schema) -> None if usable, else why not.
        self._verdicts: dict[tuple[str, str, str], str | None] = {}

    def has_model(self, name: str) -> bool:
        return name in self.models

    def worker(self, model: str) -> ModelWorker:
        """The worker of ``model`` (its process starts on first use)."""
        if model not in self.models:
            raise ProviderError(f"unknown local model {model!r}")
        if model not in self._workers:
            self._workers[model] = ModelWorker(self.models[model])
        return self._workers[model]

    def worker_pid(self, model: str) -> int | None:
        """Process id of the model's worker, if it is running."""
        worker = self._workers.get(model)
        return worker.pid if worker is not None else None

    async def warm_up(self, model: str) -> AsyncIterator[ModelLoading | ModelLoaded]:
        """Load ``model`` unless its worker has it loaded; announce the load while it lasts."""
        worker = self.worker(model)
        if worker.loaded:
            return
        yield ModelLoading(model)
        started = time.perf_counter()
        await worker.start()  # waits its turn if another call is loading it right now
        yield ModelLoaded(model, (time.perf_counter() - started) * 1000)

    async def close(self) -> None:
        """Stop every worker process."""
        for worker in list(self._workers.values()):
            await worker.close()

    async def check_tools(self, model: str, tools: list[ToolSpec]) -> dict[str, str | None]:
        """For each tool: None if ``model`` can call it, else the reason it cannot."""
        worker = self.worker(model)
        out: dict[str, str | None] = {}
        for tool in tools:
            try:
                schema = grammar_safe_schema(tool.parameters)
            except SchemaRefused as exc:
                out[tool.name] = self._verdict(model, tool.name, "", str(exc))
                continue
            text = json.dumps(schema, sort_keys=True)
            key = (model, tool.name, text)
            if key not in self._verdicts:
                # A model that does not load fails the call here, not the tool.
                await worker.start()
                try:
                    reason = await self._compile(worker, schema)
                except (WorkerCrashed, WorkerTimedOut) as exc:
                    reason = f"compiling its grammar broke the model process: {exc}"
                self._verdict(model, tool.name, text, reason)
            out[tool.name] = self._verdicts[key]
        return out

    def _verdict(self, model: str, tool: str, schema: str, reason: str | None) -> str | None:
        key = (model, tool, schema)
        if key not in self._verdicts and reason is not None:
            log.warning("local model %s: tool %s left out: %s", model, tool, reason)
        self._verdicts[key] = reason
        return reason

    async def _compile(self, worker: ModelWorker, schema: dict[str, Any]) -> str | None:
        async with contextlib.aclosing(worker.request({"op": "check", "schema": schema})) as rs:
            async for reply in rs:
                if reply["type"] == "checked":
                    return reply.get("reason")
        return "the model process gave no verdict"

    async def _usable(self, model: str, tools: list[ToolSpec]) -> list[dict[str, Any]]:
        if not tools:
            return []
        verdicts = await self.check_tools(model, tools)
        return [
            {
                "name": t.name,
                "description": t.description,
                "parameters": grammar_safe_schema(t.parameters),
            }
            for t in tools
            if verdicts[t.name] is None
        ]

    async def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
        params: GenerationParams,
    ) -> AsyncIterator[StreamItem]:
        worker = self.worker(params.model)
        request = {
            "op": "generate",
            "messages": messages,
            "tools": await self._usable(params.model, tools),
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        async with contextlib.aclosing(worker.request(request)) as replies:
            async for reply in replies:
                kind = reply.get("type")
                if kind == "text":
                    yield str(reply["text"])
                elif kind == "tool_text":
                    # The worker writes one tool call per reply: always number 0.
                    yield ToolCallChunk(0, str(reply.get("name") or ""), str(reply["text"]))
                elif kind == "error":
                    raise ProviderError(f"local model failed: {reply.get('message')}")
                elif kind == "done":
                    yield _completion(reply["completion"], params.model)
                    return
        raise ProviderError("the local model process ended the call without an answer")


def _completion(data: dict[str, Any], model: str) -> Completion:
    calls = tuple(
        ToolCallRequest(id=c["id"], name=c["name"], arguments=c["arguments"])
        for c in data.get("tool_calls") or ()
    )
    return Completion(
        text=data.get("text") or "",
        model=model,
        input_tokens=int(data.get("input_tokens") or 0),
        output_tokens=int(data.get("output_tokens") or 0),
        finish_reason=data.get("finish_reason"),
        tool_calls=calls,
    )
