"""How one dataset item changed from experiment A to experiment B, evaluator by evaluator.

The item's overall verdict (every evaluator passed) can stay "fail" while an
evaluator flips from fail to pass. So the change is read from the item's
evaluations: each metric with a verdict on both sides is compared, and the
flips say which way the item went ("mixed" when some went each way).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

BETTER, WORSE, MIXED, SAME, UNKNOWN = "better", "worse", "mixed", "same", "unknown"


def verdicts(evaluations: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    """Per metric, whether it passed: all of its verdicts (an evaluator run twice) must pass."""
    out: dict[str, bool] = {}
    for e in evaluations:
        if e.get("passed") is None:
            continue  # a value or a label without a verdict is not better or worse
        out[e["metric"]] = out.get(e["metric"], True) and bool(e["passed"])
    return out


def item_change(
    a: Mapping[str, Any] | None, b: Mapping[str, Any] | None
) -> tuple[str, list[dict[str, Any]]]:
    """B against A for one item: better, worse, mixed, same or unknown, with the flips.

    Each flip is ``{"metric", "a", "b"}`` with the verdicts (True = pass) on each side.
    """
    before = verdicts((a or {}).get("evaluations") or [])
    after = verdicts((b or {}).get("evaluations") or [])
    common = sorted(before.keys() & after.keys())
    if not common:
        return UNKNOWN, []  # a side without a verdict cannot be better or worse
    flips = [{"metric": m, "a": before[m], "b": after[m]} for m in common if before[m] != after[m]]
    up = any(flip["b"] for flip in flips)
    down = any(not flip["b"] for flip in flips)
    if up and down:
        return MIXED, flips
    if up:
        return BETTER, flips
    if down:
        return WORSE, flips
    return SAME, flips
