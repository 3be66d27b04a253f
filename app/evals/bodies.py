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

from app.evals.heuristics import HEURISTICS

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


def _params_schema() -> dict[str, Any]:
    """Every evaluator parameter, for the OpenAPI schema of ``params``: which evaluator
    takes it and what it means. The values are checked per evaluator at run time
    (``heuristics.validate_params``, ``judge.judge_params``), so unknown keys are ignored."""
    kinds = {str: "string", float: "number", bool: "boolean"}
    properties: dict[str, dict[str, Any]] = {
        # llm_judge's options (app.evals.judge.judge_params)
        "model": {"type": "string", "description": "llm_judge: the judging model"},
        "pass_at": {"type": "integer", "description": "llm_judge: pass mark, 1-5 (default 4)"},
        "max_tokens": {"type": "integer", "description": "llm_judge: token cap, 1-512"},
    }
    for h in HEURISTICS.values():
        for p in h.params:
            about = f"{h.name}: {p.title}{' (required)' if p.required else ''}"
            if p.name in properties:
                about = f"{properties[p.name]['description']}; {about}"
            properties[p.name] = {"type": kinds.get(p.kind, "string"), "description": about}
    return {"properties": properties}


EVALUATOR_EXAMPLES: list[Any] = [
    "exact_match",
    {"name": "regex", "params": {"pattern": "^\\d+$", "ignore_case": True}},
    {"name": "latency_budget", "params": {"max_ms": 2000}},
    {"name": "llm_judge", "params": {"pass_at": 4}},
]


class EvaluatorSpec(msgspec.Struct, kw_only=True):
    """One evaluator to run: a heuristic's name or ``llm_judge``, with its parameters."""

    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=100,
            description="A built-in evaluator (exact_match, contains, regex, valid_json,"
            " tool_call_success, latency_budget, cost_budget) or llm_judge",
            examples=["regex"],
        ),
    ]
    params: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(
                description="The evaluator's parameters; each names the evaluators that take it",
                examples=[{"pattern": "^\\d+$"}],
                # Litestar adds "extra" to the field's schema: the known parameters.
                extra_json_schema={"extra": _params_schema()},
            ),
        ]
        | None
    ) = None


# A bare name is short for ``{"name": name}``.
Evaluators = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | EvaluatorSpec],
    msgspec.Meta(max_length=MAX_EVALUATORS),
]


class EvaluateRun(msgspec.Struct, kw_only=True):
    """Body of ``POST /api/evals/run`` (and the run page's "run an evaluator" form)."""

    run_id: Required
    evaluators: Annotated[
        Evaluators,
        msgspec.Meta(
            min_length=1,
            description='Evaluators to run: a name, or {"name", "params"} for one that takes'
            ' parameters, e.g. {"name": "regex", "params": {"pattern": "..."}}',
            examples=[EVALUATOR_EXAMPLES],
        ),
    ]
    expected: str | None = None
