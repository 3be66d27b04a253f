"""Mistral API provider, through the official ``mistralai`` SDK.

Streams chat completions with tool calls and usage. Retries on 429 and 5xx
(and on dropped connections) are the SDK's own exponential backoff; when
those run out the call raises :class:`ProviderError`. The server URL is
configurable so Mistral-compatible servers (and the test suite's local fake)
can stand in for api.mistral.ai.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mistralai.client import Mistral
from mistralai.client.errors import MistralError
from mistralai.client.types import UNSET
from mistralai.client.utils import BackoffStrategy, RetryConfig

from agents.providers.base import (
    Completion,
    GenerationParams,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for 429/5xx, in milliseconds, passed to the SDK's RetryConfig."""

    initial_ms: int = 500
    max_ms: int = 8000
    exponent: float = 2.0
    max_elapsed_ms: int = 60000

    def to_sdk(self) -> RetryConfig:
        return RetryConfig(
            "backoff",
            BackoffStrategy(
                self.initial_ms,
                self.max_ms,
                self.exponent,
                self.max_elapsed_ms,
                jitter_ms=min(250, self.initial_ms),
            ),
            retry_connection_errors=True,
        )


def _text_of(content: Any) -> str:
    """Delta content is a string or a list of typed chunks; keep the text."""
    if content is None or content is UNSET:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for chunk in content:
        text = getattr(chunk, "text", None)
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


def _parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {"__error__": f"model sent malformed JSON arguments: {exc}", "raw": str(raw)[:500]}
    return value if isinstance(value, dict) else {"value": value}


class MistralProvider:
    name = "mistral"

    def __init__(
        self,
        api_key: str,
        server_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_ms: int = 120_000,
    ) -> None:
        self.server_url = server_url or None
        self.client = Mistral(
            api_key=api_key,
            server_url=self.server_url,
            retry_config=(retry or RetryPolicy()).to_sdk(),
            timeout_ms=timeout_ms,
        )

    async def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
        params: GenerationParams,
    ) -> AsyncIterator[str | Completion]:
        kwargs: dict[str, Any] = {
            "model": params.model,
            "messages": messages,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if tools:
            kwargs["tools"] = [t.to_mistral() for t in tools]
            kwargs["tool_choice"] = "auto"
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = None
        finish_reason = None
        model = params.model
        try:
            response = await self.client.chat.stream_async(**kwargs)
            async with response as events:
                async for event in events:
                    chunk = event.data
                    model = chunk.model or model
                    if chunk.usage:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        delta = choice.delta
                        piece = _text_of(delta.content)
                        if piece:
                            text.append(piece)
                            yield piece
                        for i, call in enumerate(delta.tool_calls or []):
                            index = call.index if isinstance(call.index, int) else i
                            slot = calls.setdefault(index, {"id": None, "name": "", "args": ""})
                            if call.id and call.id != "null":
                                slot["id"] = call.id
                            if call.function.name:
                                slot["name"] = call.function.name
                            args = call.function.arguments
                            if isinstance(args, dict):
                                slot["args"] = args
                            elif args:
                                slot["args"] += args
                        if choice.finish_reason:
                            finish_reason = str(choice.finish_reason)
        except MistralError as exc:
            raise ProviderError(
                f"Mistral API error {exc.status_code}: {exc.body[:300] or exc.message}"
            ) from exc
        tool_calls = tuple(
            ToolCallRequest(
                id=slot["id"] or f"call_{index}",
                name=slot["name"],
                arguments=_parse_arguments(slot["args"]),
            )
            for index, slot in sorted(calls.items())
        )
        yield Completion(
            text="".join(text),
            model=model,
            input_tokens=(usage.prompt_tokens or 0) if usage else 0,
            output_tokens=(usage.completion_tokens or 0) if usage else 0,
            finish_reason=finish_reason,
            tool_calls=tool_calls,
        )
