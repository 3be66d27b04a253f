"""Built-in heuristic evaluators: cheap, deterministic checks of a finished run.

Each evaluator is a plain function ``(subject, params) -> Result`` declared
with ``@heuristic``, which also records the parameters it takes so forms and
the API can offer and validate them. ``exact_match`` and ``contains`` compare
against the expected output (a dataset item's, or one given by hand);
``regex``, ``valid_json`` look at the output alone; ``tool_call_success``,
``latency_budget`` and ``cost_budget`` read the run's running totals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import regex

from app.core.errors import InputError
from app.core.formats import format_ms, format_usd

MAX_PATTERN_CHARS = 500
REGEX_TIMEOUT_S = 1.0  # a user's pattern must not hang the process (catastrophic backtracking)


@dataclass(frozen=True)
class Subject:
    """What an evaluator looks at: a run's output, what was expected, and the run row."""

    output: str | None
    expected: str | None = None
    run: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    metric: str
    value: float | None
    passed: bool | None
    label: str | None = None
    comment: str | None = None

    def evaluation(self, run_id: str, source: str = "heuristic") -> dict[str, Any]:
        """As a row for ``record_evaluation``."""
        label = self.label
        if label is None and self.passed is not None:
            label = "pass" if self.passed else "fail"
        return {
            "run_id": run_id,
            "metric": self.metric,
            "value": self.value,
            "label": label,
            "comment": self.comment,
            "source": source,
            "passed": None if self.passed is None else int(self.passed),
        }


@dataclass(frozen=True)
class Param:
    name: str
    title: str
    kind: type = str  # str | float | bool
    required: bool = False
    example: Any = "..."  # shown in the error that says the param is missing


def expected_shape(name: str, param: Param) -> str:
    """The request item that gives ``param``: ``{"name": "regex", "params": {"pattern": "..."}}``."""
    return json.dumps({"name": name, "params": {param.name: param.example}}, ensure_ascii=False)


@dataclass(frozen=True)
class Heuristic:
    name: str
    title: str
    description: str
    func: Callable[[Subject, dict[str, Any]], Result]
    params: tuple[Param, ...] = ()
    needs_expected: bool = False


HEURISTICS: dict[str, Heuristic] = {}


def heuristic(
    title: str,
    description: str,
    *params: Param,
    name: str | None = None,
    needs_expected: bool = False,
) -> Callable[[Callable[[Subject, dict[str, Any]], Result]], Callable[..., Result]]:
    """Declare an evaluator; ``name`` (default: the function's) is what users pick."""

    def register(func: Callable[[Subject, dict[str, Any]], Result]) -> Callable[..., Result]:
        key = name or func.__name__
        HEURISTICS[key] = Heuristic(key, title, description, func, params, needs_expected)
        return func

    return register


def validate_params(name: str, raw: Any) -> dict[str, Any]:
    """Check an evaluator's parameters (from JSON or a form); return them typed."""
    spec = HEURISTICS.get(name)
    if spec is None:
        raise InputError(f"unknown evaluator {name!r}; available: {', '.join(HEURISTICS)}")
    raw = raw or {}
    if not isinstance(raw, dict):
        raise InputError(f"{name}: params must be an object")
    out: dict[str, Any] = {}
    for p in spec.params:
        value = raw.get(p.name)
        if value is None or value == "":
            if p.required:
                raise InputError(
                    f"{name} needs {p.name} ({p.title}) in its params,"
                    f" e.g. {expected_shape(name, p)}"
                )
            continue
        if p.kind is bool:
            out[p.name] = value in (True, "true", "on", "1", 1)
        elif p.kind is float:
            if isinstance(value, bool):
                raise InputError(f"{name}: {p.name} must be a number")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{name}: {p.name} must be a number, got {value!r}") from None
            if not math.isfinite(number) or number < 0:
                raise InputError(f"{name}: {p.name} must be a finite number ≥ 0")
            out[p.name] = number
        else:
            if not isinstance(value, str):
                raise InputError(f"{name}: {p.name} must be a string")
            out[p.name] = value
    if name == "regex":
        pattern = out["pattern"]
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InputError(f"regex: pattern is longer than {MAX_PATTERN_CHARS} characters")
        try:
            regex.compile(pattern)
        except regex.error as exc:
            raise InputError(f"regex: invalid pattern: {exc}") from None
    return out


def evaluate(name: str, subject: Subject, params: dict[str, Any] | None = None) -> Result:
    """Run one heuristic by name with already-validated params."""
    return HEURISTICS[name].func(subject, params or {})


def _norm(text: str, case_sensitive: bool) -> str:
    text = " ".join(text.split())  # whitespace differences are not wrong answers
    return text if case_sensitive else text.casefold()


def _no_output(metric: str, subject: Subject) -> Result | None:
    if subject.output is None:
        return Result(metric, 0.0, False, comment="the run produced no answer")
    return None


def _skipped(metric: str, why: str) -> Result:
    return Result(metric, None, None, label="skipped", comment=why)


@heuristic(
    "Exact match",
    "The answer equals the expected output (whitespace-normalised).",
    Param("case_sensitive", "Case sensitive", bool),
    needs_expected=True,
)
def exact_match(subject: Subject, params: dict[str, Any]) -> Result:
    if subject.expected is None:
        return _skipped("exact_match", "no expected output")
    if (missing := _no_output("exact_match", subject)) is not None:
        return missing
    case = bool(params.get("case_sensitive"))
    ok = _norm(subject.output or "", case) == _norm(subject.expected, case)
    return Result("exact_match", float(ok), ok)


@heuristic(
    "Contains",
    "The answer contains a text (default: the expected output).",
    Param("text", "Text to look for (empty: the expected output)"),
    Param("case_sensitive", "Case sensitive", bool),
)
def contains(subject: Subject, params: dict[str, Any]) -> Result:
    needle = params.get("text") or subject.expected
    if not needle:
        return _skipped("contains", "no text and no expected output")
    if (missing := _no_output("contains", subject)) is not None:
        return missing
    case = bool(params.get("case_sensitive"))
    ok = _norm(needle, case) in _norm(subject.output or "", case)
    return Result("contains", float(ok), ok, comment=f"looked for {needle[:200]!r}")


@heuristic(
    "Regex",
    "The answer matches a regular expression (searched anywhere).",
    Param("pattern", "Pattern", required=True, example="^\\d+$"),
    Param("ignore_case", "Ignore case", bool),
    name="regex",  # the function is named apart so it does not shadow the module
)
def regex_match(subject: Subject, params: dict[str, Any]) -> Result:
    if (missing := _no_output("regex", subject)) is not None:
        return missing
    flags = regex.IGNORECASE if params.get("ignore_case") else 0
    try:
        found = regex.search(
            params["pattern"], subject.output or "", flags=flags, timeout=REGEX_TIMEOUT_S
        )
    except TimeoutError:
        return Result("regex", None, None, label="timeout", comment="the pattern took too long")
    ok = found is not None
    return Result("regex", float(ok), ok, comment=f"/{params['pattern'][:200]}/")


def _json_candidate(text: str) -> str:
    """The text itself, or the body of a single fenced code block around it."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and stripped.count("```") == 2:
        body = stripped[3:-3]
        first_line, _, rest = body.partition("\n")
        return rest if first_line.strip().isalpha() or not first_line.strip() else body
    return stripped


@heuristic("Valid JSON", "The answer parses as JSON (a single ``` fenced block is allowed).")
def valid_json(subject: Subject, params: dict[str, Any]) -> Result:
    if (missing := _no_output("valid_json", subject)) is not None:
        return missing
    try:
        json.loads(_json_candidate(subject.output or ""))
    except ValueError as exc:
        return Result("valid_json", 0.0, False, comment=f"not JSON: {exc}"[:300])
    return Result("valid_json", 1.0, True)


@heuristic(
    "Tool-call success",
    "Share of the run's tool calls that succeeded; passes when none failed.",
)
def tool_call_success(subject: Subject, params: dict[str, Any]) -> Result:
    total = int(subject.run.get("tool_calls") or 0)
    errors = int(subject.run.get("tool_errors") or 0)
    if total == 0:
        return Result("tool_call_success", 1.0, True, comment="no tool calls")
    return Result(
        "tool_call_success",
        (total - errors) / total,
        errors == 0,
        comment=f"{total - errors} of {total} tool calls succeeded",
    )


@heuristic(
    "Latency budget",
    "The run finished within a time budget; the value is its latency in ms.",
    Param("max_ms", "Budget (ms)", float, required=True, example=2000),
)
def latency_budget(subject: Subject, params: dict[str, Any]) -> Result:
    latency = subject.run.get("latency_ms")
    if latency is None:
        return _skipped("latency_ms", "the run has not ended")
    ok = latency <= params["max_ms"]
    return Result("latency_ms", float(latency), ok, comment=f"budget {format_ms(params['max_ms'])}")


@heuristic(
    "Cost budget",
    "The run cost at most a budget; the value is its cost in USD.",
    Param("max_usd", "Budget (USD)", float, required=True, example=0.01),
)
def cost_budget(subject: Subject, params: dict[str, Any]) -> Result:
    status = subject.run.get("cost_status")
    cost = float(subject.run.get("cost_usd") or 0.0)
    if status in ("unpriced", "partial"):
        return Result(
            "cost_usd",
            cost,
            None,
            label="unpriced",
            comment="the model has no price: the cost is unknown",
        )
    ok = cost <= params["max_usd"]
    return Result("cost_usd", cost, ok, comment=f"budget {format_usd(params['max_usd'])}")
