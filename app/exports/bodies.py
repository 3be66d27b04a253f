"""The body of a new export, one msgspec Struct for the JSON API and the exports page.

``RunSelection`` (which runs go into a fine-tuning file) is shared with the
fine-tuning body. A form sends the run ids as one comma- or newline-separated
text; the API may send a list or that same text: both become a list here.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec

ExportKind = Literal["huggingface", "wandb", "finetune_jsonl"]
KINDS: tuple[str, ...] = get_args(ExportKind)
DatasetFormat = Literal["parquet", "jsonl"]
RunId = Annotated[str, msgspec.Meta(max_length=64)]
RunIds = Annotated[
    list[RunId] | str,
    msgspec.Meta(description="run ids: a list, or one text separated by commas or newlines"),
]
Below = Annotated[float, msgspec.Meta(description="the score under which a run counts as low")]


class RunSelection(msgspec.Struct, kw_only=True):
    """Runs picked by id, failed runs, and runs scored below a bar."""

    run_ids: RunIds = []
    failed: bool = False
    below: Below | None = None

    def __post_init__(self) -> None:
        if isinstance(self.run_ids, str):
            text = self.run_ids.replace("\n", ",")
            self.run_ids = [i for i in (s.strip() for s in text.split(",")) if i]
            if any(len(i) > 64 for i in self.run_ids):
                raise ValueError("run_ids must be a list of run ids")

    def ids(self) -> list[str]:
        return list(self.run_ids)

    def require_some(self) -> None:
        if not self.run_ids and not self.failed and self.below is None:
            raise ValueError("choose runs: run_ids, failed=true, or a score threshold (below)")


class ExportCreate(RunSelection, kw_only=True):
    """``huggingface`` takes format, repo and push; ``wandb`` a project;
    ``finetune_jsonl`` a run selection."""

    kind: ExportKind
    format: DatasetFormat = "parquet"
    repo: str | None = None
    # Unset: push when there is a repo (given here or in the settings).
    push: bool | None = None
    project: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind == "finetune_jsonl":
            self.require_some()
