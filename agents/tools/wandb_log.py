"""``wandb_log``: log numeric metrics to a Weights & Biases run.

Without ``WANDB_API_KEY`` it logs in offline mode into the data directory, so
the tool works on a machine with no network; ``wandb sync`` uploads later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agents.providers.base import ToolSpec
from agents.tools import ToolOutput

SPEC = ToolSpec(
    name="wandb_log",
    description="Log numeric metrics (name -> number) to a Weights & Biases run.",
    parameters={
        "type": "object",
        "properties": {
            "metrics": {
                "type": "object",
                "description": "metric names mapped to numbers",
                "additionalProperties": {"type": "number"},
            },
            "step": {"type": "integer", "minimum": 0},
        },
        "required": ["metrics"],
    },
)


def run(arguments: dict[str, Any], settings: dict[str, Any]) -> ToolOutput:
    metrics = arguments.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("metrics must be a non-empty object of name -> number")
    bad = [k for k, v in metrics.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
    if bad:
        raise ValueError(f"metrics must be numbers; not numeric: {', '.join(map(str, bad))}")

    import wandb  # imported lazily: wandb is slow to import and most runs never log

    mode = settings.get("mode") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    wandb_dir = Path(settings.get("dir") or Path(settings.get("data_dir", ".")) / "wandb")
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run_ = wandb.init(
        project=settings.get("project") or "agentop",
        mode=mode,
        dir=str(wandb_dir),
        job_type="agent-tool",
        settings=wandb.Settings(silent=True, console="off"),
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
