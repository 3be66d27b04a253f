"""Request bodies of datasets and experiments, checked once for the JSON API and the forms.

Types, ranges, lengths and required fields are constraints here; what needs
the store or the runner (does the dataset or run exist, is the model served,
are the tools and evaluators known, does an uploaded file parse) is checked
by the domain functions in ``app.experiments``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from app.evals.bodies import Evaluators
from app.runs.input import RunConfig

MAX_ITEMS = 1000
MAX_NAME_CHARS = 200
MAX_CONCURRENCY = 8
MAX_ROW_ID = 2**63 - 1  # SQLite's integers

# A name that is more than blanks.
Name = Annotated[str, msgspec.Meta(pattern=r"\S", max_length=MAX_NAME_CHARS)]
Format = Literal["csv", "jsonl", "ndjson"]


class DatasetCreate(msgspec.Struct, kw_only=True):
    """Body of ``POST /api/datasets`` and of the upload form: ``items`` (objects with an
    input and maybe an expected output), or a file's ``content`` in a ``format``."""

    name: Name
    # Objects: the input under input, prompt or question; the rest is read by parse_items.
    items: (
        Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)] | None
    ) = None
    content: str | None = None
    format: Format | None = None  # none: by the file's name, else sniffed
    description: str | None = None


class DatasetFromRuns(msgspec.Struct, kw_only=True):
    """Body of ``POST /api/datasets/from-runs`` and of the "pick runs" form."""

    name: Name
    run_ids: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=200)]],
        msgspec.Meta(min_length=1, max_length=MAX_ITEMS),
    ]


class ExperimentConfig(RunConfig, kw_only=True, forbid_unknown_fields=True):
    """How every item runs: the fields and limits of ``POST /api/runs``, no more
    (``tools`` none: every tool; empty: no tools)."""


class ExperimentCreate(msgspec.Struct, kw_only=True):
    """Body of ``POST /api/experiments`` and of the dataset page's "run an experiment" form."""

    dataset_id: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROW_ID)]
    config: ExperimentConfig | None = None
    evaluators: Evaluators | None = None
    name: Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)] | None = None
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)] | None = None  # none: 2
