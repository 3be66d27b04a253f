"""``hf_list_models``: search the Hugging Face Hub for models."""

from __future__ import annotations

from typing import Any

from agents.providers.base import ToolSpec
from agents.tools import ToolOutput

SPEC = ToolSpec(
    name="hf_list_models",
    description="Search the Hugging Face Hub and list matching model ids.",
    parameters={
        "type": "object",
        "properties": {
            "search": {"type": "string", "maxLength": 80},
            "limit": {"type": "integer", "minimum": 1, "maximum": 20},
        },
        "required": ["search"],
    },
)


def run(arguments: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
    from huggingface_hub import HfApi

    search = str(arguments.get("search", "")).strip()
    if not search:
        raise ValueError("search must be a non-empty string")
    limit = max(1, min(int(arguments.get("limit") or 5), 20))
    api = HfApi(token=settings.get("token") or None, endpoint=settings.get("endpoint") or None)
    models = [m.id for m in api.list_models(search=search, limit=limit)]
    if not models:
        return ToolOutput(f"no models match {search!r}")
    return ToolOutput("\n".join(models))
