"""Mistral API provider, through the official ``mistralai`` SDK.

Streams chat completions with tool calls and usage; a tool call's arguments
stream as :class:`ToolCallChunk` pieces, as the server sends them. Retries on
429 and 5xx (and on dropped connections) are the SDK's own exponential
backoff; when those run out the call raises :class:`ProviderError`. The server URL is
configurable so Mistral-compatible servers (and the test suite's local fake)
can stand in for api.mistral.ai.

A stream only counts when it ends with a finish reason. After an HTTP 200 a
server may still send nothing, stop half-way, drop the connection or send an
error event (OpenAI-compatible servers such as llama.cpp's send
``data: {"error": …}`` or ``event: error`` on a context overflow): each of
these raises :class:`ProviderError` with the provider's own words, so the run
fails instead of succeeding with an empty answer. A prompt too long for the
model reads "the prompt does not fit the model's context window: …". A stream
without ``usage`` gives a completion whose tokens are None (unknown).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2  # the SDK's own HTTP client: its transport errors surface mid-stream
from mistralai.client import Mistral
from mistralai.client.errors import MistralError, ResponseValidationError
from mistralai.client.types import UNSET
from mistralai.client.utils import BackoffStrategy, RetryConfig

from agents.providers.base import (
    Completion,
    GenerationParams,
    ProviderError,
    StreamItem,
    ToolCallChunk,
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


CONTEXT_OVERFLOW = "the prompt does not fit the model's context window"
# How Mistral, OpenAI and llama.cpp's server word a prompt that is too long.
_CONTEXT_WORDS = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too large for (the )?model"
    r"|exceeds? (the )?(available )?context|n_ctx",
    re.IGNORECASE,
)
_WORDS_LIMIT = 500


def _overflow_or(message: str) -> str:
    """``message``, prefixed as a context overflow when that is what it says."""
    return f"{CONTEXT_OVERFLOW}: {message}" if _CONTEXT_WORDS.search(message) else message


def _message_of(body: str) -> str:
    """The message in an error body: Mistral's ``message``, OpenAI's ``error.message``."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        error = data.get("error")
        for found in (
            data.get("message"),
            error.get("message") if isinstance(error, dict) else error,
        ):
            if isinstance(found, str) and found:
                return found
    return body


def _api_error(exc: MistralError) -> ProviderError:
    """An HTTP error answer (after the SDK's retries), in the provider's words."""
    words = _message_of((exc.body or exc.message or "").strip())[:_WORDS_LIMIT]
    return ProviderError(_overflow_or(f"Mistral API error {exc.status_code}: {words}"))


def _error_in_event(raw: str) -> str:
    """What went wrong, from a stream event that is not a completion chunk.

    The SDK hands over the event as JSON ``{"event", "data", …}``; an error
    event carries ``{"error": {"message": …}}`` (or a bare string) as data.
    """
    try:
        event = json.loads(raw)
    except (TypeError, ValueError):
        event = {"data": raw}
    data = event.get("data") if isinstance(event, dict) else event
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        words = error.get("message") or json.dumps(error, ensure_ascii=False)
    elif error is not None:
        words = str(error)
    elif isinstance(event, dict) and event.get("event") == "error":
        words = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    else:
        return f"the model provider sent a malformed stream event: {raw[:_WORDS_LIMIT]}"
    return _overflow_or(f"the model provider sent an error mid-stream: {str(words)[:_WORDS_LIMIT]}")


def _check_end(
    finish_reason: str | None,
    events: int,
    text: str,
    calls: int,
    output_tokens: int | None,
    max_tokens: int,
) -> None:
    """Raise unless the stream ended as a finished answer does."""
    if events == 0:
        raise ProviderError("the model provider answered 200 but sent an empty stream")
    if finish_reason is None:
        raise ProviderError(
            "the model provider's stream was cut off before a finish reason"
            f" (after {len(text)} characters of text)"
        )
    if finish_reason == "error":
        raise ProviderError("the model provider ended the stream with finish reason 'error'")
    if finish_reason == "model_length":
        raise ProviderError(f"{CONTEXT_OVERFLOW}: the model stopped at 'model_length'")
    # "length" is also max_tokens being reached (a cut answer the user asked for);
    # before that limit, or with nothing written, it is the context running out.
    if finish_reason == "length" and (
        (not text and not calls) or (output_tokens is not None and output_tokens < max_tokens)
    ):
        raise ProviderError(
            f"{CONTEXT_OVERFLOW}: the model stopped at 'length' after"
            f" {output_tokens if output_tokens is not None else 'an unknown number of'}"
            f" of {max_tokens} tokens"
        )


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
    ) -> AsyncIterator[StreamItem]:
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
        received = 0
        try:
            response = await self.client.chat.stream_async(**kwargs)
            async with response as events:
                async for event in events:
                    received += 1
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
                                piece = json.dumps(args)
                            elif args:
                                slot["args"] += args
                                piece = args
                            else:
                                piece = ""
                            # The arguments stream like text, so a viewer sees the call being written.
                            yield ToolCallChunk(index=index, name=slot["name"], text=piece)
                        if choice.finish_reason:
                            finish_reason = str(choice.finish_reason)
        except ResponseValidationError as exc:
            if exc.status_code != 200:
                raise _api_error(exc) from exc
            raise ProviderError(_error_in_event(exc.body)) from exc
        except MistralError as exc:
            raise _api_error(exc) from exc
        except httpx2.HTTPError as exc:
            raise ProviderError(
                f"the connection to the model provider broke mid-stream: {type(exc).__name__}:"
                f" {exc}"[:_WORDS_LIMIT]
            ) from exc
        input_tokens = usage.prompt_tokens if usage else None
        output_tokens = usage.completion_tokens if usage else None
        _check_end(
            finish_reason, received, "".join(text), len(calls), output_tokens, params.max_tokens
        )
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
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=finish_reason,
            tool_calls=tool_calls,
        )
