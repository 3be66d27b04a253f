"""What every model provider offers the agent loop.

A provider turns a conversation (Mistral/OpenAI-style message dicts) plus tool
specs into a stream: text deltas as ``str`` while the model writes, pieces of
tool-call arguments as :class:`ToolCallChunk` while it writes a tool call, then
one final :class:`Completion` carrying tool calls and token usage. A provider
that reports no usage leaves the token counts ``None`` (unknown), never 0.

A provider that must load a model before it can answer (the local one)
offers ``warm_up(model)`` (:class:`WarmsUp`): it yields :class:`ModelLoading`
and then :class:`ModelLoaded` when it loads the model, nothing when the model
is loaded already, so the agent loop can say why the run waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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


@dataclass(frozen=True)
class ToolCallChunk:
    """A piece of the JSON arguments of tool call number ``index`` of this reply."""

    index: int
    name: str
    text: str


@dataclass(frozen=True)
class ModelLoading:
    """The provider starts loading ``model``; the call waits for it."""

    model: str


@dataclass(frozen=True)
class ModelLoaded:
    """``model`` finished loading after ``latency_ms``."""

    model: str
    latency_ms: float


# What ``Provider.stream`` yields; the markers are optional, text and a Completion are not.
StreamItem = str | ToolCallChunk | ModelLoading | ModelLoaded | Completion


class ProviderError(RuntimeError):
    """A model call failed for good (after the provider's own retries)."""


class Provider(Protocol):
    name: str

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec],
        params: GenerationParams,
    ) -> AsyncIterator[StreamItem]: ...


@runtime_checkable
class WarmsUp(Protocol):
    """A provider that may have to load a model before a call (see the module docstring)."""

    def warm_up(self, model: str) -> AsyncIterator[ModelLoading | ModelLoaded]: ...
