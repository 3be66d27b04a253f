"""``ask_agent``: hand a question to another agent and use its answer.

The other agent is a separate, fully recorded child run with its own model
calls and tools. Starting it is the host application's business: the host
passes an async ``delegate`` in the tool's settings (``question -> answer``),
so this module knows nothing about runs, storage or the web.

The tool is async: waiting on the child run holds no thread, and when this
call is cancelled (its run stopped, or it passed its time limit) the delegate
is cancelled with it and stops the child.
"""

from __future__ import annotations

from typing import Any

from agents.providers.base import ToolSpec
from agents.tools import ToolOutput

SPEC = ToolSpec(
    name="ask_agent",
    description=(
        "Ask a helper agent to work on a sub-question (it can use tools too) "
        "and return its final answer."
    ),
    parameters={
        "type": "object",
        "properties": {"question": {"type": "string", "minLength": 1, "maxLength": 2000}},
        "required": ["question"],
    },
)


async def run(arguments: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
    question = str(arguments.get("question") or "").strip()
    if not question:
        raise ValueError("question must be a non-empty string")
    delegate = settings.get("delegate")
    if delegate is None:
        raise RuntimeError("ask_agent is not available here (no host to start a helper agent)")
    return ToolOutput(str(await delegate(question)))
