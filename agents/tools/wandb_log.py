"""``wandb_log``: log numeric metrics to a Weights & Biases run.

Without ``WANDB_API_KEY`` it logs in offline mode into the data directory, so
the tool works on a machine with no network; ``wandb sync`` uploads later.

wandb prints to the terminal through its own settings, not the run's: see
:func:`quiet_wandb`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from agents.extras import require
from agents.providers.base import ToolSpec
from agents.tools import ToolOutput, time_limit

# The modes ``wandb.init`` is typed to accept.
WandbMode = Literal["online", "offline", "disabled", "shared"]

# Metrics are a bounded list of {name, value} rather than a free-form object:
# constrained generation on a small local model needs maxItems/maxLength to
# be sure the JSON closes within its token budget.
SPEC = ToolSpec(
    name="wandb_log",
    description="Log numeric metrics to a Weights & Biases run.",
    parameters={
        "type": "object",
        "properties": {
            "metrics": {
                "type": "array",
                "minItems": 1,
                "maxItems": 8,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 40},
                        "value": {"type": "number"},
                    },
                    "required": ["name", "value"],
                },
            },
            "step": {"type": "integer", "minimum": 0},
        },
        "required": ["metrics"],
    },
)


# wandb's own switches, read from the environment: ``WANDB_SILENT`` when it first
# sets itself up (``silent=True`` given to one run does not quiet wandb's
# terminal), ``WANDB_DISABLE_WEAVE`` at every init. The latter stops the
# "Install Weave" hint, printed because a module named ``agents`` (this
# package; also the OpenAI Agents SDK's name) is imported. A user's own value wins.
QUIET_ENV = {"WANDB_SILENT": "true", "WANDB_DISABLE_WEAVE": "true"}


def quiet_wandb() -> None:
    """Keep wandb's banners and hints out of the terminal and the server log
    (call before the first ``wandb.init`` of the process)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)


def _metrics(raw: Any) -> dict[str, float]:
    """Accept the schema's list form, or a plain mapping some models send."""
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(m.get("name"), m.get("value")) for m in raw if isinstance(m, dict)]
    else:
        items = []
    if not items:
        raise ValueError("metrics must be a non-empty list of {name, value}")
    bad = [
        str(k) for k, v in items if not k or isinstance(v, bool) or not isinstance(v, (int, float))
    ]
    if bad:
        raise ValueError(f"metric values must be numbers; not numeric: {', '.join(bad)}")
    return {str(k): float(v) for k, v in items}


def run(arguments: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
    metrics = _metrics(arguments.get("metrics"))

    # Imported here, not at the top: wandb is optional and slow to import.
    require("wandb", "wandb")
    quiet_wandb()
    import wandb

    # A configured mode goes to wandb unchecked: wandb.init validates it.
    mode: WandbMode = settings.get("mode") or (
        "online" if os.environ.get("WANDB_API_KEY") else "offline"
    )
    wandb_dir = Path(settings.get("dir") or Path(settings.get("data_dir", ".")) / "wandb")
    wandb_dir.mkdir(parents=True, exist_ok=True)
    # Online, init and the upload at finish go over the network: bound both by
    # the tool's time limit (data not uploaded stays on disk for `wandb sync`).
    limit = time_limit(settings)
    run_ = wandb.init(
        project=settings.get("project") or "agentop",
        mode=mode,
        dir=str(wandb_dir),
        job_type="agent-tool",
        settings=wandb.Settings(
            silent=True, console="off", init_timeout=limit, finish_timeout=limit
        ),
    )
    try:
        if "step" in arguments:
            run_.log(metrics, step=int(arguments["step"]))
        else:
            run_.log(metrics)
        run_id = run_.id
    finally:
        run_.finish()
    return ToolOutput(f"logged {len(metrics)} metric(s) to W&B run {run_id} ({mode})")
