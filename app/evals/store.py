"""Record and read evaluations.

An evaluation is one metric about one run: a number, a label or both, with an
optional comment, from a ``source`` (human, api, heuristic, llm-judge).
``passed`` is the verdict the dashboards count for success rates: given
explicitly, or read from a pass/fail-like label, or left empty for metrics
that are only a measurement. A corrected answer is metric ``correction``
with the corrected text as label (fine-tune exports read it).
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlite_utils import Database

from app.core.errors import InputError
from app.evals.bodies import EvaluationCreate, HumanScore
from app.store.rows import decode_json

PASS_LABELS = frozenset({"pass", "passed", "up", "good", "correct", "yes", "true", "ok"})
FAIL_LABELS = frozenset({"fail", "failed", "down", "bad", "incorrect", "no", "false"})
CORRECTION = "correction"


def verdict(label: str | None, passed: bool | None = None) -> int | None:
    """1 pass, 0 fail, None for no verdict: from ``passed`` if given, else the label."""
    if passed is not None:
        return int(passed)
    if label:
        word = label.strip().lower()
        if word in PASS_LABELS:
            return 1
        if word in FAIL_LABELS:
            return 0
    return None


def evaluation_row(body: EvaluationCreate) -> dict[str, Any]:
    """A checked body as an evaluation row: texts trimmed, the verdict read off the label."""
    label = (body.label or "").strip() or None
    if body.value is None and label is None:
        raise InputError("give a numeric value, a label, or both")
    return {
        "run_id": body.run_id.strip(),
        "metric": body.metric.strip(),
        "value": body.value,
        "label": label,
        "comment": (body.comment or "").strip() or None,
        "source": body.source,
        "passed": verdict(label, body.passed),
    }


def human_evaluations(run_id: str, score: HumanScore) -> list[dict[str, Any]]:
    """The run page's thumbs, 1-5 score and corrected answer as evaluation rows."""
    bodies = []
    if score.thumb:
        bodies.append(
            EvaluationCreate(
                run_id=run_id,
                metric="thumbs",
                value=1 if score.thumb == "up" else 0,
                label=score.thumb,
                source="human",
            )
        )
    if score.score is not None:
        bodies.append(
            EvaluationCreate(
                run_id=run_id,
                metric="score",
                value=score.score,
                label=f"{score.score}/5",
                source="human",
                passed=score.score >= 4,
            )
        )
    correction = (score.correction or "").strip()
    if correction:
        bodies.append(
            EvaluationCreate(run_id=run_id, metric=CORRECTION, label=correction, source="human")
        )
    if not bodies:
        raise InputError("pick thumbs up or down, a score, or write a corrected answer")
    # The comment goes with the first verdict only, so the list does not repeat it.
    bodies[0].comment = score.comment
    return [evaluation_row(b) for b in bodies]


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
