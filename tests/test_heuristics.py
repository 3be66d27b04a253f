"""Each built-in heuristic evaluator, its parameters, and reading a judge's score."""

from __future__ import annotations

import pytest

from app.core.errors import InputError
from app.evals.heuristics import HEURISTICS, Subject, evaluate, validate_params
from app.evals.judge import judge_messages, parse_score


def check(name, output, expected=None, run=None, **params):
    return evaluate(name, Subject(output, expected, run or {}), validate_params(name, params))


def test_all_evaluators_are_offered():
    assert list(HEURISTICS) == [
        "exact_match",
        "contains",
        "regex",
        "valid_json",
        "tool_call_success",
        "latency_budget",
        "cost_budget",
    ]


def test_exact_match():
    assert check("exact_match", "Paris", "paris").passed is True
    assert check("exact_match", "  Paris \n", "Paris").passed is True  # whitespace normalised
    assert check("exact_match", "Paris", "paris", case_sensitive=True).passed is False
    r = check("exact_match", "Paris, France", "Paris")
    assert (r.passed, r.value, r.metric) == (False, 0.0, "exact_match")
    skipped = check("exact_match", "Paris", None)
    assert skipped.passed is None and skipped.label == "skipped"
    failed_run = check("exact_match", None, "Paris")
    assert failed_run.passed is False and "no answer" in failed_run.comment


def test_contains():
    assert check("contains", "The capital is Paris.", "paris").passed is True
    assert check("contains", "The capital is Paris.", None, text="capital").passed is True
    assert check("contains", "The capital is Paris.", "Lyon").passed is False
    assert check("contains", "The capital is Paris.", "paris", case_sensitive=True).passed is False
    assert check("contains", "anything", None).label == "skipped"


def test_regex():
    assert check("regex", "Order #4521 shipped", pattern=r"#\d{4}\b").passed is True
    assert check("regex", "no number", pattern=r"\d+").passed is False
    assert check("regex", "YES", pattern="^yes$", ignore_case=True).passed is True
    with pytest.raises(InputError, match="invalid pattern"):
        validate_params("regex", {"pattern": "(unclosed"})
    with pytest.raises(InputError, match="needs pattern"):
        validate_params("regex", {})
    with pytest.raises(InputError, match="longer than"):
        validate_params("regex", {"pattern": "a" * 501})


def test_regex_cannot_hang():
    # Catastrophic backtracking is cut off by the timeout instead of hanging the server.
    r = check("regex", "a" * 5000 + "!", pattern=r"^(\w+\s?)*$")
    assert r.passed in (False, None)


def test_valid_json():
    assert check("valid_json", '{"a": [1, 2]}').passed is True
    assert check("valid_json", '```json\n{"a": 1}\n```').passed is True
    assert check("valid_json", "```\n[1, 2]\n```").passed is True
    bad = check("valid_json", "{'a': 1}")
    assert bad.passed is False and "not JSON" in bad.comment
    assert check("valid_json", 'Sure! {"a": 1}').passed is False


def test_tool_call_success():
    none = check("tool_call_success", "x", run={"tool_calls": 0, "tool_errors": 0})
    assert (none.passed, none.value) == (True, 1.0)
    some = check("tool_call_success", "x", run={"tool_calls": 4, "tool_errors": 1})
    assert (some.passed, some.value) == (False, 0.75)
    assert "3 of 4" in some.comment
    # Judged on the run, so a failed answer does not matter here.
    assert check("tool_call_success", None, run={"tool_calls": 2, "tool_errors": 0}).passed


def test_latency_budget():
    fast = check("latency_budget", "x", run={"latency_ms": 850.0}, max_ms="1000")
    assert (fast.metric, fast.value, fast.passed) == ("latency_ms", 850.0, True)
    assert check("latency_budget", "x", run={"latency_ms": 1500.0}, max_ms=1000).passed is False
    assert check("latency_budget", "x", run={}, max_ms=1000).label == "skipped"
    with pytest.raises(InputError, match="needs max_ms"):
        validate_params("latency_budget", {})
    with pytest.raises(InputError, match="must be a number"):
        validate_params("latency_budget", {"max_ms": "fast"})
    with pytest.raises(InputError, match="≥ 0"):
        validate_params("latency_budget", {"max_ms": -5})


def test_cost_budget():
    cheap = check(
        "cost_budget", "x", run={"cost_usd": 0.0004, "cost_status": "priced"}, max_usd=0.001
    )
    assert (cheap.metric, cheap.passed) == ("cost_usd", True)
    assert (
        check(
            "cost_budget", "x", run={"cost_usd": 0.01, "cost_status": "priced"}, max_usd=0.001
        ).passed
        is False
    )
    assert (
        check("cost_budget", "x", run={"cost_usd": 0, "cost_status": "free"}, max_usd=0).passed
        is True
    )
    unknown = check("cost_budget", "x", run={"cost_usd": 0, "cost_status": "unpriced"}, max_usd=1)
    assert unknown.passed is None and unknown.label == "unpriced"


def test_unknown_evaluator_and_bad_params():
    with pytest.raises(InputError, match="unknown evaluator 'bleu'"):
        validate_params("bleu", {})
    with pytest.raises(InputError, match="params must be an object"):
        validate_params("contains", ["x"])


def test_result_as_evaluation_row():
    row = check("exact_match", "a", "a").evaluation("run1")
    assert row == {
        "run_id": "run1",
        "metric": "exact_match",
        "value": 1.0,
        "label": "pass",
        "comment": None,
        "source": "heuristic",
        "passed": 1,
    }


@pytest.mark.parametrize(
    "text, score",
    [
        ("4", 4),
        ("Score: 5/5 - correct.", 5),
        ("I'd give it a 2 because", 2),
        ("3.", 3),
        ("The answer is 42", None),
        ("no idea", None),
        ("", None),
        ("1.5 stars", None),
        ("Score (1-5): 4", 4),
        ("between 1 - 5", None),
    ],
)
def test_judge_reads_a_score(text, score):
    assert parse_score(text) == score


def test_judge_prompt_holds_question_reference_and_answer():
    system, user = judge_messages("What is 2+2?", "4", "four")
    assert system["role"] == "system" and "1" in system["content"] and "5" in system["content"]
    assert "What is 2+2?" in user["content"] and "Reference answer:\nfour" in user["content"]
    assert "Answer to grade:\n4" in user["content"]
    _, long = judge_messages("q" * 5000, None, None)
    assert len(long["content"]) < 2000 and "(no answer)" in long["content"]


def test_budget_comments_read_in_the_one_number_format():
    """A budget is written like every other duration and amount: never "1e+308"."""
    huge = check("latency_budget", "x", run={"latency_ms": 850.0}, max_ms=1e308)
    assert huge.comment == "budget > 999T d" and huge.passed is True
    assert check("latency_budget", "x", run={"latency_ms": 1.0}, max_ms=2000).comment == (
        "budget 2.00 s"
    )
    cost = check("cost_budget", "x", run={"cost_usd": 0.0, "cost_status": "priced"}, max_usd=1e-7)
    assert cost.comment == "budget < $0.000001"
    assert (
        "e+"
        not in check(
            "cost_budget", "x", run={"cost_usd": 0.0, "cost_status": "priced"}, max_usd=1e300
        ).comment
    )
