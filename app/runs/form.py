"""The run settings form (model, temperature, max tokens, tools), shared by every page that starts runs.

A form post is checked by the same ``RunCreate`` as the JSON API; this
module only knows the form's own conventions: a blank field means "not
given", and the tool checkboxes count only when the form says it shows them
(``tools_present``), so that no box ticked means no tools rather than all.
"""

from __future__ import annotations

from typing import Any

from litestar.di import NamedDependency

from app.runs.input import RunCreate
from app.runs.runner import Runner
from app.web.bodies import from_form

# Number fields: surrounding spaces are forgiven, as people type them.
NUMBER_FIELDS = ("temperature", "max_tokens", "max_rounds")


def form_context(
    runner: NamedDependency[Runner], values: dict[str, Any] | None = None, error: str = ""
) -> dict:
    values = values or {}
    return {
        "models": runner.model_choices(),
        "tools": runner.tool_names,
        "defaults": {
            "model": runner.config.resolved_default_model,
            "temperature": runner.config.temperature,
            "max_tokens": runner.config.max_tokens,
        },
        "values": values,
        "error": error,
    }


def form_to_input(form: dict[str, Any]) -> dict[str, Any]:
    """The form's fields under the API's names: checkboxes as a list, only with
    ``tools_present``; blank fields left out."""
    data = {k: v for k, v in form.items() if k not in ("tools", "tools_present")}
    if form.get("tools_present"):
        tools = form.get("tools") or []
        data["tools"] = tools if isinstance(tools, list) else [tools]
    for key in NUMBER_FIELDS:
        if isinstance(data.get(key), str):
            data[key] = data[key].strip()
    for key in ("temperature", "max_tokens", "max_rounds", "model", "system_prompt", "session"):
        if isinstance(data.get(key), str) and not data[key].strip():
            data.pop(key)
    return data


def run_from_form(form: dict[str, Any]) -> RunCreate:
    """The new-run form checked as a ``RunCreate``, or an InputError naming the field."""
    return from_form(form_to_input(form), RunCreate, lists=("tools",))
