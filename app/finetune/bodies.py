"""The body of a new fine-tuning job, one msgspec Struct for the JSON API and the page's form.

The runs to train on are picked as for a fine-tuning export (``RunSelection``);
the rest are the job's options, with Mistral's defaults when left out.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from app.exports.bodies import ExportCreate, RunSelection

BaseModel = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z0-9][\w.:\-]{0,99}$", description="a Mistral model name"),
]
TrainingSteps = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
LearningRate = Annotated[float, msgspec.Meta(ge=1e-8, le=1.0)]
Suffix = Annotated[
    str,
    msgspec.Meta(pattern=r"^[\w\-]*$", description="letters, digits, - and _ (18 are kept)"),
]
DEFAULT_HYPERPARAMETERS = {"training_steps": 10, "learning_rate": 0.0001}


class FineTuneCreate(RunSelection, kw_only=True):
    """Which runs to train on, the base model and the training options."""

    base_model: BaseModel = "open-mistral-7b"
    training_steps: TrainingSteps | None = None
    learning_rate: LearningRate | None = None
    suffix: Suffix = "agentop"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_some()

    def options(self) -> dict[str, object]:
        """What the Mistral job is created with."""
        hyper = {
            key: value
            for key, value in (
                ("training_steps", self.training_steps),
                ("learning_rate", self.learning_rate),
            )
            if value is not None
        }
        return {
            "base_model": self.base_model,
            "hyperparameters": hyper or dict(DEFAULT_HYPERPARAMETERS),
            "suffix": self.suffix[:18],
        }

    def export(self) -> ExportCreate:
        """The fine-tuning export that builds the training file from the same runs."""
        return ExportCreate(
            kind="finetune_jsonl", run_ids=self.ids(), failed=self.failed, below=self.below
        )
