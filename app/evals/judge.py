"""LLM-as-judge: ask a model to grade an answer from 1 to 5.

The judge goes through the Runner's provider for the chosen model, so it
runs on whatever the studio is configured with: the local SmolLM2 by
default, Mistral when a key is set. A small model does not always answer
with a number; then the evaluation is recorded as ``unparsed`` with the raw
reply, rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agents.providers.base import Completion, GenerationParams
from app.core.errors import InputError
from app.evals.heuristics import Result
from app.runs.runner import Runner

METRIC = "llm_judge"
MAX_FIELD_CHARS = 1500  # keeps the prompt inside a small local model's context
PASS_AT = 4
SYSTEM = (
    "You are a strict grader. Read the question, the reference answer if there is one, "
    "and the answer to grade. Reply with one digit from 1 (wrong or useless) to 5 "
    "(correct and complete), then one short sentence saying why."
)
# A lone digit 1-5 ("4", "4/5", "a 4."), not part of a number ("42", "1.5") nor of a
# range echoed from the prompt ("(1-5)").
_SCORE = re.compile(
    r"(?<!\d)(?<!\d\.)(?<![-–]\s)(?<![-–])([1-5])(?:\s*/\s*5)?(?!\d|\.\d|\s*[-–]\s*\d)"
)


@dataclass(frozen=True)
class Verdict:
    result: Result
    details: dict[str, Any]


def judge_params(raw: Any, runner: Runner) -> dict[str, Any]:
    """Validate the judge's options: a model the studio can run, a pass mark, a token cap."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise InputError("llm_judge: params must be an object")
    model = raw.get("model") or runner.config.resolved_default_model
    if not isinstance(model, str) or len(model) > 200:
        raise InputError("llm_judge: model must be a string")
    runner.provider_for(model)  # raises InputError for a model nobody serves
    out: dict[str, Any] = {"model": model}
    for key, low, high, default in (("pass_at", 1, 5, PASS_AT), ("max_tokens", 1, 512, 32)):
        value = raw.get(key)
        if value is None or value == "":
            out[key] = default
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InputError(f"llm_judge: {key} must be a whole number") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise InputError(f"llm_judge: {key} must be between {low} and {high}")
        out[key] = number
    return out


def _clip(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + " […]"


def judge_messages(question: str, answer: str | None, expected: str | None) -> list[dict[str, str]]:
    parts = [f"Question:\n{_clip(question)}"]
    if expected:
        parts.append(f"Reference answer:\n{_clip(expected)}")
    parts.append(f"Answer to grade:\n{_clip(answer) or '(no answer)'}")
    parts.append("Score (1-5):")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_score(text: str) -> int | None:
    match = _SCORE.search(text or "")
    return int(match.group(1)) if match else None


async def judge(
    runner: Runner,
    question: str,
    answer: str | None,
    expected: str | None = None,
    params: dict[str, Any] | None = None,
) -> Verdict:
    """Grade ``answer`` with the configured model; never raises for a model's odd reply."""
    params = params or judge_params({}, runner)
    provider = runner.provider_for(params["model"])
    generation = GenerationParams(
        model=params["model"], temperature=0.0, max_tokens=params["max_tokens"]
    )
    completion: Completion | None = None
    async for item in provider.stream(judge_messages(question, answer, expected), [], generation):
        if isinstance(item, Completion):
            completion = item
    raw = completion.text if completion else ""
    details = {
        "model": params["model"],
        "provider": provider.name,
        "raw": raw[:2000],
        "input_tokens": completion.input_tokens if completion else 0,
        "output_tokens": completion.output_tokens if completion else 0,
    }
    score = parse_score(raw)
    if score is None:
        result = Result(
            METRIC,
            None,
            None,
            label="unparsed",
            comment=f"the judge did not give a score: {raw.strip()[:300]!r}",
        )
    else:
        reason = raw.strip()[:500]
        result = Result(
            METRIC, float(score), score >= params["pass_at"], label=f"{score}/5", comment=reason
        )
    return Verdict(result, details)
