"""Request bodies of evaluations, checked once for the JSON API and the run page's forms.

Types, ranges, lengths and required fields are constraints here (a JSON
handler gets them through ``JSONBody[...]``, a form through
``app.web.bodies.from_form``); what needs the store or the runner (does the
run exist, is the evaluator known, what do its params mean) is checked by
the domain functions in ``app.evals.store`` and ``app.evals.apply``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import msgspec

MAX_LABEL_CHARS = 20_000
MAX_COMMENT_CHARS = 5_000
MAX_EVALUATORS = 12
# Letters, digits, spaces and _ . : / -, at most 100 characters; spaces around are trimmed.
METRIC_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9_.:/\- ]{0,99}$"

Source = Literal["human", "api", "heuristic", "llm-judge"]
# A text that is more than blanks.
Required = Annotated[str, msgspec.Meta(pattern=r"\S")]
# Finite: JSON has no infinity, and an overflowing literal must not become one.
Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class EvaluationCreate(msgspec.Struct, kw_only=True):
    """Body of ``POST /api/evals``: a value, a label or both, about one run."""

    run_id: Required
    metric: Annotated[str, msgspec.Meta(pattern=METRIC_PATTERN)]
    value: Finite | None = None
    label: Annotated[str, msgspec.Meta(max_length=MAX_LABEL_CHARS)] | None = None
    comment: Annotated[str, msgspec.Meta(max_length=MAX_COMMENT_CHARS)] | None = None
    source: Source = "api"
    passed: bool | None = None


class HumanScore(msgspec.Struct, kw_only=True):
    """The run page's "score this run" form: thumbs, a 1-5 score, a corrected answer."""

    thumb: Literal["up", "down"] | None = None
    score: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    comment: Annotated[str, msgspec.Meta(max_length=MAX_COMMENT_CHARS)] | None = None
    correction: Annotated[str, msgspec.Meta(max_length=MAX_LABEL_CHARS)] | None = None


class EvaluatorSpec(msgspec.Struct, kw_only=True):
    """One evaluator to run: a heuristic's name or ``llm_judge``, with its parameters."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    params: dict[str, Any] | None = None


# A bare name is short for ``{"name": name}``.
Evaluators = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | EvaluatorSpec],
    msgspec.Meta(max_length=MAX_EVALUATORS),
]


class EvaluateRun(msgspec.Struct, kw_only=True):
    """Body of ``POST /api/evals/run`` (and the run page's "run an evaluator" form)."""

    run_id: Required
    evaluators: Annotated[Evaluators, msgspec.Meta(min_length=1)]
    expected: str | None = None
