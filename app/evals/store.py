"""Validate, record and read evaluations.

An evaluation is one metric about one run: a number, a label or both, with an
optional comment, from a ``source`` (human, api, heuristic, llm-judge).
``passed`` is the verdict the dashboards count for success rates: given
explicitly, or read from a pass/fail-like label, or left empty for metrics
that are only a measurement. A corrected answer is metric ``correction``
with the corrected text as label (fine-tune exports read it).
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from sqlite_utils import Database

from app.runs.runner import InputError
from app.store.rows import decode_json

SOURCES = ("human", "api", "heuristic", "llm-judge")
METRIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/\- ]{0,99}$")
MAX_LABEL_CHARS = 20_000
MAX_COMMENT_CHARS = 5_000
PASS_LABELS = frozenset({"pass", "passed", "up", "good", "correct", "yes", "true", "ok"})
FAIL_LABELS = frozenset({"fail", "failed", "down", "bad", "incorrect", "no", "false"})
CORRECTION = "correction"


def _optional_str(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string")
    if len(value) > limit:
        raise InputError(f"{key} is longer than {limit} characters")
    return value.strip() or None


def _value(data: dict[str, Any]) -> float | None:
    value = data.get("value")
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InputError("value must be a number, not true/false (use passed for a verdict)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"value must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError("value must be a finite number")
    return number


def verdict(label: str | None, passed: Any = None) -> int | None:
    """1 pass, 0 fail, None for no verdict: from ``passed`` if given, else the label."""
    if passed is not None:
        if not isinstance(passed, bool):
            raise InputError("passed must be true or false")
        return int(passed)
    if label:
        word = label.strip().lower()
        if word in PASS_LABELS:
            return 1
        if word in FAIL_LABELS:
            return 0
    return None


def parse_evaluation(data: Any, default_source: str = "api") -> dict[str, Any]:
    """Turn a JSON body or form into an evaluation row, or raise InputError saying what is wrong."""
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object")
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not run_id.strip():
        raise InputError("run_id is required and must be a non-empty string")
    metric = data.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise InputError("metric is required and must be a non-empty string")
    metric = metric.strip()
    if not METRIC_RE.match(metric):
        raise InputError(
            "metric must be at most 100 characters: letters, digits, spaces and _ . : / -"
        )
    value = _value(data)
    label = _optional_str(data, "label", MAX_LABEL_CHARS)
    if value is None and label is None:
        raise InputError("give a numeric value, a label, or both")
    comment = _optional_str(data, "comment", MAX_COMMENT_CHARS)
    source = data.get("source") or default_source
    if source not in SOURCES:
        raise InputError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
    return {
        "run_id": run_id.strip(),
        "metric": metric,
        "value": value,
        "label": label,
        "comment": comment,
        "source": source,
        "passed": verdict(label, data.get("passed")),
    }


def record_evaluation(
    db: Database,
    evaluation: dict[str, Any],
    created_by: str | None = None,
    experiment_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Insert one evaluation (already validated); the run must exist. Returns the stored row."""
    run_id = evaluation["run_id"]
    if db.execute("select 1 from runs where id = ?", [run_id]).fetchone() is None:
        raise LookupError(f"run {run_id!r} not found")
    row = {
        **evaluation,
        "created_by": created_by,
        "created_at": time.time(),
        "experiment_id": experiment_id,
        "details": json.dumps(details, ensure_ascii=False, default=str) if details else None,
    }
    pk = db.table("evaluations").insert(row).last_pk
    assert pk is not None  # the row was just inserted
    stored = get_evaluation(db, pk)
    assert stored is not None
    return stored


def _decode(row: Any) -> dict[str, Any]:
    out = decode_json(row, "details")
    if out.get("passed") is not None:
        out["passed"] = bool(out["passed"])
    return out


def get_evaluation(db: Database, evaluation_id: int) -> dict[str, Any] | None:
    rows = list(db.query("select * from evaluations where id = ?", [evaluation_id]))
    return _decode(rows[0]) if rows else None


def run_evaluations(db: Database, run_id: str) -> list[dict[str, Any]]:
    """A run's evaluations, newest first."""
    rows = db.query(
        "select * from evaluations where run_id = ? order by created_at desc, id desc", [run_id]
    )
    return [_decode(r) for r in rows]


def list_evaluations(
    db: Database,
    run_id: str | None = None,
    metric: str | None = None,
    source: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Evaluations newest first, joined with their run's model and session."""
    where, args = [], []
    for column, value in (("e.run_id", run_id), ("e.metric", metric), ("e.source", source)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    sql = (
        "select e.*, r.model as run_model, r.session_id as run_session, r.prompt as run_prompt"
        " from evaluations e join runs r on r.id = e.run_id"
        + (" where " + " and ".join(where) if where else "")
        + " order by e.created_at desc, e.id desc limit ? offset ?"
    )
    return [_decode(r) for r in db.query(sql, [*args, limit, offset])]


def latest_correction(db: Database, run_id: str) -> str | None:
    """The newest human-corrected answer of a run, if any."""
    row = db.execute(
        "select label from evaluations where run_id = ? and metric = ? and label is not null"
        " order by created_at desc, id desc limit 1",
        [run_id, CORRECTION],
    ).fetchone()
    return row[0] if row else None
