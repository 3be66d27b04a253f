"""The run settings form (model, temperature, max tokens, tools), shared by every page that starts runs.

A form post is checked by the same ``RunCreate`` as the JSON API; this
module only knows the form's own conventions: a blank field means "not
given", and the tool checkboxes count only when the form says it shows them
(``tools_present``), so that no box ticked means no tools rather than all.

The boxes start ticked as the selected model's default tools
(``AgentConfig.tools_by_default``) and, with JavaScript, are redrawn for the
model picked (htmx, see templates/partials/run_form.html). Without it they
stay as drawn, so the form says for which model (``tools_model``) and which
were ticked then (``tools_default``): boxes left as they were for another
model count as "not given", and that model's defaults apply.
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
    models = runner.model_choices()
    return {
        "models": models,
        "tools": runner.tool_names,
        # Model -> the boxes ticked for it before anyone touches them.
        "model_tools": {model: _default_ticks(runner, model) for model, _provider in models},
        "defaults": {
            "model": runner.config.resolved_default_model,
            "temperature": runner.config.temperature,
            "max_tokens": runner.config.max_tokens,
        },
        "values": values,
        "error": error,
    }


def _default_ticks(runner: Runner, model: str) -> list[str]:
    default = runner.config.tools_by_default(model)
    return runner.tool_names if default is None else list(default)


# Form fields that describe the tool boxes rather than the run.
TOOL_FIELDS = ("tools", "tools_present", "tools_model", "tools_default")


def _untouched_for_another_model(form: dict[str, Any], ticked: list[str]) -> bool:
    """Boxes drawn for one model, left as drawn, while another model was picked
    (no JavaScript redrew them): they say nothing about the model picked."""
    drawn_for = str(form.get("tools_model") or "")
    model = str(form.get("model") or "").strip()
    if not drawn_for or not model or model == drawn_for:
        return False
    drawn = [t for t in str(form.get("tools_default") or "").split(",") if t]
    return sorted(ticked) == sorted(drawn)


def form_to_input(form: dict[str, Any]) -> dict[str, Any]:
    """The form's fields under the API's names: checkboxes as a list, only with
    ``tools_present``; blank fields left out."""
    data = {k: v for k, v in form.items() if k not in TOOL_FIELDS}
    if form.get("tools_present"):
        tools = form.get("tools") or []
        tools = tools if isinstance(tools, list) else [tools]
        if not _untouched_for_another_model(form, tools):
            data["tools"] = tools
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
