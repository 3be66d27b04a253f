"""Tools an agent can call.

Each tool is a module in this package named after the tool, defining ``SPEC``
(a :class:`~agents.providers.base.ToolSpec`) and ``run(arguments, settings)``.
``agents/config.yaml`` says which tools are enabled and with what settings, so
adding a tool is adding a module and a config entry: no registry to keep.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.providers.base import ToolSpec


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returns: text for the model, plus cost lines beyond tokens."""

    text: str
    cost_lines: tuple[dict[str, Any], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    func: Callable[[dict[str, Any], dict[str, Any]], ToolOutput]
    settings: dict[str, Any]
    timeout_s: float = 30.0

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, arguments: dict[str, Any]) -> ToolOutput:
        return self.func(arguments, self.settings)


def load_tool(name: str, settings: dict[str, Any]) -> Tool:
    """Import ``agents.tools.<name>`` and bind it to its settings."""
    if not name.isidentifier():
        raise ValueError(f"invalid tool name {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    return Tool(
        spec=module.SPEC,
        func=module.run,
        settings=dict(settings),
        timeout_s=float(settings.get("timeout", 30)),
    )
