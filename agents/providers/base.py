"""What every model provider offers the agent loop.

A provider turns a conversation (Mistral/OpenAI-style message dicts) plus tool
specs into a stream: text deltas as ``str`` while the model writes, then one
final :class:`Completion` carrying tool calls and token usage. A provider that
reports no usage leaves the token counts ``None`` (unknown), never 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model sees it: a name, what it does, a JSON schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_mistral(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class GenerationParams:
    model: str
    temperature: float = 0.7
    max_tokens: int = 512


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    input_tokens: int | None = 0  # None: the provider reported no usage
    output_tokens: int | None = 0
    finish_reason: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = field(default_factory=tuple)


class ProviderError(RuntimeError):
    """A model call failed for good (after the provider's own retries)."""


class Provider(Protocol):
    name: str

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
        params: GenerationParams,
    ) -> AsyncIterator[str | Completion]: ...
