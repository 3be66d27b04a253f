"""Typed events the agent loop emits while a run unfolds.

Each event is a frozen dataclass whose ``type`` is also the SSE event name and
the name of the template partial that renders it. The loop hands events to an
:class:`EventSink`; it knows nothing about where they go (SQLite, a terminal,
a benchmark's counter).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Event:
    """Base of every event; ``at`` is a Unix timestamp in seconds."""

    type: ClassVar[str] = "event"
    at: float = field(default_factory=_now, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _field_names(type(self))}
        if not all(type(v) in _SCALARS for v in data.values()):
            # Nested values (tool calls, messages, params) are copied deeply, as the
            # sink may keep the dict; flat ones (every token) skip that cost.
            data = asdict(self)
        data["type"] = self.type
        return data


_SCALARS = frozenset({str, int, float, bool, type(None)})


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    model: str
    provider: str
    params: dict[str, Any]


@dataclass(frozen=True)
class MessageAdded(Event):
    """A complete message joined the conversation (system, user, assistant or tool)."""

    type: ClassVar[str] = "message"
    role: str
    content: str
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ModelLoading(Event):
    """A model is being loaded before it can answer (a local model's worker process starts)."""

    type: ClassVar[str] = "model_loading"
    model: str


@dataclass(frozen=True)
class ModelLoaded(Event):
    """The model announced by :class:`ModelLoading` is ready; ``latency_ms`` is its load time."""

    type: ClassVar[str] = "model_loaded"
    model: str
    latency_ms: float


@dataclass(frozen=True)
class LLMCallStarted(Event):
    """A model call was sent; until its first token or tool call the run waits for the model."""

    type: ClassVar[str] = "llm_call_started"
    model: str
    round: int = 0


@dataclass(frozen=True)
class TokenDelta(Event):
    """A piece of assistant text as the model streams it.

    ``run_output_tokens`` is a live estimate of the run's output tokens so far:
    the usage reported by finished calls plus one per piece streamed in this
    call. The provider's exact usage replaces it at ``llm_call_finished``.
    """

    type: ClassVar[str] = "token"
    text: str
    round: int = 0
    run_output_tokens: int | None = None


@dataclass(frozen=True)
class ToolCallDelta(Event):
    """A piece of a tool call's JSON arguments as the model writes them.

    ``index`` tells the calls of one model reply apart; ``name`` is the tool's
    name as far as it is known yet. Joined in order, the pieces of one call
    are the arguments its ``tool_call_started`` event carries (parsed).
    ``run_output_tokens`` is the same live estimate as on :class:`TokenDelta`.
    """

    type: ClassVar[str] = "tool_call_delta"
    round: int
    index: int
    name: str
    text: str
    run_output_tokens: int | None = None


@dataclass(frozen=True)
class ToolCallStarted(Event):
    type: ClassVar[str] = "tool_call_started"
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolCallFinished(Event):
    type: ClassVar[str] = "tool_call_finished"
    call_id: str
    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    latency_ms: float
    cost_lines: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class LLMCallFinished(Event):
    """One model call completed; carries usage for cost and token totals.

    Tokens are ``None`` when the provider reported no usage: unknown, not 0.
    """

    type: ClassVar[str] = "llm_call_finished"
    model: str
    provider: str
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float
    round: int = 0
    finish_reason: str | None = None


@dataclass(frozen=True)
class MemorySnapshot(Event):
    """The agent's memory after one step: the messages it would send next and its scratch state.

    Step 0 is the prompt as given; each model reply and each round of tool
    results is a further step. Snapshots are whole (not deltas) so any one
    can be shown alone; the studio computes what changed between two.
    """

    type: ClassVar[str] = "memory_snapshot"
    step: int
    label: str
    messages: tuple[dict[str, Any], ...]
    scratch: dict[str, Any]


@dataclass(frozen=True)
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    response: str


@dataclass(frozen=True)
class RunFailed(Event):
    type: ClassVar[str] = "run_failed"
    error: str


class EventSink(Protocol):
    """Where the loop sends its events. ``emit`` may persist before returning."""

    async def emit(self, event: Event) -> None: ...
