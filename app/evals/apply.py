"""Run chosen evaluators (heuristics and the LLM judge) on a finished run and record them.

Used by the run page ("evaluate this run"), the API and experiments, which
score every item with the evaluators picked for the experiment.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.core.errors import InputError
from app.evals import heuristics
from app.evals.bodies import EvaluateRun, EvaluatorSpec
from app.evals.heuristics import Result, Subject
from app.evals.judge import METRIC as JUDGE
from app.evals.judge import judge, judge_params
from app.evals.store import record_evaluation
from app.runs.runner import Runner
from app.store import Store
from app.store.runs import get_run
from app.store.statuses import ACTIVE, SUCCEEDED

log = logging.getLogger(__name__)


def evaluator_names() -> list[str]:
    return [*heuristics.HEURISTICS, JUDGE]


def parse_evaluators(
    chosen: list[str | EvaluatorSpec] | None, runner: Runner
) -> list[dict[str, Any]]:
    """Evaluators (already shaped by the body) checked against what exists, as
    ``{"name", "params"}`` with each one's params typed."""
    out = []
    for item in chosen or []:
        spec = EvaluatorSpec(name=item) if isinstance(item, str) else item
        if spec.name == JUDGE:
            params = judge_params(spec.params, runner)
        elif spec.name in heuristics.HEURISTICS:
            params = heuristics.validate_params(spec.name, spec.params)
        else:
            raise InputError(
                f"unknown evaluator {spec.name!r}; available: {', '.join(evaluator_names())}"
            )
        out.append({"name": spec.name, "params": params})
    return out


async def evaluate_request(
    store: Store, runner: Runner, body: EvaluateRun, created_by: str | None = None
) -> list[dict[str, Any]]:
    """``POST /api/evals/run`` and the run page's form: check what needs the store, then score.

    LookupError when the run does not exist; InputError for an unknown
    evaluator, bad params or a run still going.
    """
    evaluators = parse_evaluators(body.evaluators, runner)
    run = await store.read(get_run, body.run_id)
    if run is None:
        raise LookupError(f"run {body.run_id!r} not found")
    if run["status"] in ACTIVE:
        raise InputError("the run has not finished yet")
    return await evaluate_run(store, runner, body.run_id, evaluators, body.expected, created_by)


def subject_of(run: dict[str, Any], expected: str | None) -> Subject:
    output = run.get("response") if run.get("status") == SUCCEEDED else None
    return Subject(output=output, expected=expected, run=run)


async def _one(
    runner: Runner, run: dict[str, Any], choice: dict[str, Any], expected: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    name, params = choice["name"], choice["params"]
    subject = subject_of(run, expected)
    if name == JUDGE:
        try:
            verdict = await judge(runner, run.get("prompt") or "", subject.output, expected, params)
        except Exception as exc:  # noqa: BLE001 - a failed judge call is a result, not a crash
            log.warning("llm judge failed on run %s: %s", run["id"], exc)
            result = Result(
                JUDGE, None, None, label="error", comment=f"{type(exc).__name__}: {exc}"[:500]
            )
            return result.evaluation(run["id"], "llm-judge"), {"params": params}
        return verdict.result.evaluation(run["id"], "llm-judge"), {
            **verdict.details,
            "params": params,
        }
    # On a thread: a user's regex may take up to its timeout.
    result = await asyncio.to_thread(heuristics.evaluate, name, subject, params)
    details: dict[str, Any] = {"evaluator": name, "params": params}
    if expected is not None:
        details["expected"] = expected[:2000]
    return result.evaluation(run["id"]), details


async def evaluate_run(
    store: Store,
    runner: Runner,
    run_id: str,
    evaluators: list[dict[str, Any]],
    expected: str | None = None,
    created_by: str | None = None,
    experiment_id: int | None = None,
) -> list[dict[str, Any]]:
    """Score one run with each evaluator; return the stored evaluations."""
    run = await store.read(get_run, run_id)
    if run is None:
        raise LookupError(f"run {run_id!r} not found")
    stored = []
    for choice in evaluators:
        row, details = await _one(runner, run, choice, expected)
        stored.append(await store.write(record_evaluation, row, created_by, experiment_id, details))
    return stored
