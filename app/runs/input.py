"""What a run is asked to do: ``RunCreate`` checked once, then made a ``RunInput``.

``RunCreate`` (a msgspec Struct) carries every constraint a field can check by
itself: lengths, ranges, types, a prompt that is more than whitespace. It is
the body of ``POST /api/runs`` (Litestar validates it there and the OpenAPI
schema shows it), of the new-run form (``app.web.bodies.from_form``), and the
settings a replay may override (``RunSettings``). What needs the agent
config - defaults, which tools exist - is checked by ``to_run_input``.

A run that names no tools gets its model's default tools
(``AgentConfig.tools_by_default``: none for the small local model, every tool
for the others), written into the request, so the run records the tools it
really had and a replay keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from agents.config import AgentConfig
from agents.loop import RunRequest
from app.core.errors import InputError
from app.core.validation import convert

MAX_PROMPT_CHARS = 100_000
MAX_SYSTEM_CHARS = 20_000
MAX_NAME_CHARS = 200  # a model's or a session's name

Prompt = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        pattern=r"\S",  # more than whitespace
        description="What the agent is asked; must hold more than whitespace",
    ),
]
ModelName = Annotated[
    str,
    msgspec.Meta(max_length=MAX_NAME_CHARS, description="A model; unset: the default model"),
]
Temperature = Annotated[
    float,
    # Litestar's schema drops a constraint that is 0 (falsy), so the minimum is
    # restated for it; msgspec enforces ``ge`` either way.
    msgspec.Meta(ge=0.0, le=2.0, extra_json_schema={"extra": {"minimum": 0.0}}),
]
SystemPrompt = Annotated[str, msgspec.Meta(max_length=MAX_SYSTEM_CHARS)]
SessionName = Annotated[
    str, msgspec.Meta(max_length=MAX_NAME_CHARS, description="Groups runs under a name")
]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=32768)]
MaxRounds = Annotated[int, msgspec.Meta(ge=1, le=20, description="Model calls at most")]


class RunConfig(msgspec.Struct, kw_only=True):
    """How a run runs; a field left out (or null) takes its default. An
    experiment's configuration is this (``app.experiments.bodies``)."""

    model: ModelName | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    max_rounds: MaxRounds | None = None
    system_prompt: SystemPrompt | None = None
    # A single name stands for a list of one, as it always has.
    tools: list[str] | str | None = None


class RunSettings(RunConfig, kw_only=True):
    """A run's configuration and the session it joins (what a replay may override)."""

    session: SessionName | None = None


class RunCreate(RunSettings, kw_only=True):
    """Body of ``POST /api/runs``; only ``prompt`` is required. ``tools``
    unset means the model's default tools (every tool, but none for the small
    local model), ``[]`` none."""

    prompt: Prompt


@dataclass(frozen=True)
class RunInput:
    request: RunRequest
    session: str | None = None


def to_run_input(body: RunCreate, config: AgentConfig, known_tools: list[str]) -> RunInput:
    """A checked body as a RunRequest: the config's defaults filled in, its tools checked."""
    tools = [body.tools] if isinstance(body.tools, str) else body.tools
    if tools is not None:
        unknown = sorted(set(tools) - set(known_tools))
        if unknown:
            raise InputError(
                f"unknown tool(s): {', '.join(unknown)}; available: {', '.join(known_tools)}"
            )
    model = body.model or config.resolved_default_model
    if tools is None:
        # None stays "every tool" for a model without a default of its own.
        default = config.tools_by_default(model)
        tools = list(default) if default is not None else None
    request = RunRequest(
        prompt=body.prompt,
        model=model,
        temperature=config.temperature if body.temperature is None else body.temperature,
        max_tokens=body.max_tokens or config.max_tokens,
        system_prompt=body.system_prompt or None,
        tools=tuple(tools) if tools is not None else None,
        max_rounds=body.max_rounds or config.max_rounds,
    )
    return RunInput(request=request, session=(body.session or "").strip() or None)


def tools_from_text(text: str) -> list[str]:
    """Tool names as typed on a command line: comma-separated; "none" or "" for none."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    return [] if [n.lower() for n in names] == ["none"] else names


def parse_run_input(data: Any, config: AgentConfig, known_tools: list[str]) -> RunInput:
    """Fields already decoded (the CLI, an experiment's config, a helper agent, a
    replay) checked as a ``RunCreate``, or an InputError saying what is wrong.

    None and "" mean "not given", as they always have for these callers.
    """
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object")
    given = {k: v for k, v in data.items() if v is not None and v != ""}
    return to_run_input(convert(given, RunCreate), config, known_tools)
