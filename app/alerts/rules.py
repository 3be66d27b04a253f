"""Cost-spike rules, checked as each run finishes, and the alerts they raise.

Three kinds of rule:

- ``run_cost``: one run cost more than ``threshold_usd``. One alert per run.
- ``window_cost``: the runs that ended in the last ``window_s`` seconds cost
  more than ``threshold_usd`` together.
- ``baseline``: a run cost more than ``multiplier`` times the average of the
  ``baseline_runs`` runs that ended before it.

A spike is one alert. For ``run_cost`` the run is the spike (its fingerprint
is rule + run, unique in the table, so re-checking a run never re-alerts).
For the other two a spike is an *episode*: it opens when the condition first
holds, stays open (no new alert) while later runs still meet it, and closes
(``resolved_at``) at the first finished run that does not. Checks run on the
single writer thread (and, on PostgreSQL, under an advisory lock shared by
the replicas), so two runs finishing together cannot both open one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlite_utils import Database

from app.alerts.bodies import MIN_BASELINE_RUNS, NEEDS, RuleCreate
from app.core.formats import format_exact
from app.pricing.costs import format_cost
from app.store.backend import is_postgres

log = logging.getLogger(__name__)


def create_rule(db: Database, body: RuleCreate) -> dict[str, Any]:
    """Store a rule with only the fields its kind uses; the body is already checked."""
    rule: dict[str, Any] = {"name": body.name.strip(), "kind": body.kind}
    rule.update({field: getattr(body, field) for field in NEEDS[body.kind]})
    rule["webhook_url"] = (body.webhook_url or "").strip() or None
    rule["email_to"] = ", ".join(body.addresses()) or None
    pk = db.table("alert_rules").insert({**rule, "enabled": 1, "created_at": time.time()}).last_pk
    assert pk is not None  # the row was just inserted
    created = get_rule(db, pk)
    assert created is not None
    return created


def get_rule(db: Database, rule_id: int) -> dict[str, Any] | None:
    row = db.execute("select * from alert_rules where id = ?", [rule_id]).fetchone()
    return dict(row) if row else None


def list_rules(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute("select * from alert_rules order by id").fetchall()]


def set_enabled(db: Database, rule_id: int, enabled: bool) -> dict[str, Any] | None:
    db.execute("update alert_rules set enabled = ? where id = ?", [1 if enabled else 0, rule_id])
    return get_rule(db, rule_id)


def delete_rule(db: Database, rule_id: int) -> bool:
    """Disable-and-keep when alerts reference it (history stays readable), else delete."""
    if get_rule(db, rule_id) is None:
        return False
    if db.execute("select 1 from alerts where rule_id = ? limit 1", [rule_id]).fetchone():
        db.execute("update alert_rules set enabled = 0 where id = ?", [rule_id])
    else:
        db.execute("delete from alert_rules where id = ?", [rule_id])
    return True


def _shown(value: Any, show: Callable[[Any], str]) -> str:
    """``show(value)`` for a number; "—" for what a rule row lacks (a hand-edited database)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return show(value) if number else "—"


def describe_rule(rule: dict[str, Any]) -> str:
    threshold = _shown(rule.get("threshold_usd"), lambda v: format_cost(v, "priced"))
    if rule["kind"] == "run_cost":
        return f"a run costs more than {threshold}"
    if rule["kind"] == "window_cost":
        minutes = _shown(rule.get("window_s"), lambda v: f"{v / 60:g}")
        return f"runs cost more than {threshold} within {minutes} min"
    multiplier = _shown(rule.get("multiplier"), format_exact)
    runs = _shown(rule.get("baseline_runs"), lambda v: f"{v:g}")
    return f"a run costs more than {multiplier}× the average of the previous {runs} runs"


# --- checking -----------------------------------------------------------------


def _evaluate(db: Database, rule: dict[str, Any], run: dict[str, Any]) -> tuple[bool, float, float]:
    """(fires, observed value, threshold) of ``rule`` for the finished ``run``."""
    cost = run["cost_usd"] or 0.0
    if rule["kind"] == "run_cost":
        return cost > rule["threshold_usd"], cost, rule["threshold_usd"]
    end = run["ended_at"]
    if rule["kind"] == "window_cost":
        total = db.execute(
            "select coalesce(sum(cost_usd), 0) from runs where ended_at > ? and ended_at <= ?",
            [end - rule["window_s"], end],
        ).fetchone()[0]
        return total > rule["threshold_usd"], total, rule["threshold_usd"]
    previous = [
        r[0]
        for r in db.execute(
            "select cost_usd from runs where ended_at < ? and id != ? and ended_at is not null"
            " order by ended_at desc limit ?",
            [end, run["id"], rule["baseline_runs"]],
        ).fetchall()
    ]
    if len(previous) < MIN_BASELINE_RUNS:
        return False, cost, 0.0
    baseline = sum(previous) / len(previous)
    limit = baseline * rule["multiplier"]
    return baseline > 0 and cost > limit, cost, limit


def _message(rule: dict[str, Any], run: dict[str, Any], value: float, limit: float) -> str:
    observed = format_cost(value, "priced")
    if rule["kind"] == "window_cost":
        what = f"runs in the last {rule['window_s'] / 60:g} min cost {observed}"
    else:
        what = f"run {run['id']} ({run['model']}) cost {observed}"
    return f"Cost alert “{rule['name']}”: {what}, over {format_cost(limit, 'priced')}."


def _raise(
    db: Database,
    rule: dict[str, Any],
    run: dict[str, Any],
    fingerprint: str,
    value: float,
    limit: float,
    now: float,
) -> int:
    pk = (
        db.table("alerts")
        .insert(
            {
                "rule_id": rule["id"],
                "fingerprint": fingerprint,
                "run_id": run["id"],
                "value_usd": value,
                "threshold_usd": limit,
                "message": _message(rule, run, value, limit),
                "created_at": now,
            }
        )
        .last_pk
    )
    assert pk is not None  # the alert was just inserted
    for channel, target in (("webhook", rule["webhook_url"]), ("email", rule["email_to"])):
        if target:
            db.table("alert_deliveries").insert(
                {"alert_id": pk, "channel": channel, "target": target, "status": "pending"}
            )
    return pk


# pg_advisory_xact_lock key of alert checks ("alerts" in ASCII).
ALERTS_LOCK = 0x616C65727473


def check_run(db: Database, run_id: str, now: float | None = None) -> list[int]:
    """Check every enabled rule against a finished run; return the ids of new alerts."""
    now = now or time.time()
    if is_postgres(db):
        # Replicas check the runs they ended at once: one at a time, so an
        # episode (one open alert per rule) is opened once, not once per replica.
        db.execute("select pg_advisory_xact_lock(?)", [ALERTS_LOCK])
    row = db.execute("select * from runs where id = ?", [run_id]).fetchone()
    if row is None or row["ended_at"] is None:
        return []
    run = dict(row)
    new: list[int] = []
    for rule in db.execute("select * from alert_rules where enabled = 1").fetchall():
        rule = dict(rule)
        try:
            fires, value, limit = _evaluate(db, rule, run)
        except (TypeError, ValueError, KeyError) as exc:
            # A rule row the form could not have made (a hand-edited database, an old
            # version): it is skipped, and the other rules are still checked.
            log.warning("alert rule %s cannot be checked (%r): %s", rule.get("id"), rule, exc)
            continue
        if rule["kind"] == "run_cost":
            fingerprint = f"rule{rule['id']}:run:{run_id}"
            seen = db.execute(
                "select 1 from alerts where fingerprint = ?", [fingerprint]
            ).fetchone()
            if fires and not seen:
                new.append(_raise(db, rule, run, fingerprint, value, limit, now))
            continue
        open_alert = db.execute(
            "select id from alerts where rule_id = ? and resolved_at is null", [rule["id"]]
        ).fetchone()
        if fires and open_alert is None:
            fingerprint = f"rule{rule['id']}:episode:{run_id}"
            if not db.execute(
                "select 1 from alerts where fingerprint = ?", [fingerprint]
            ).fetchone():
                new.append(_raise(db, rule, run, fingerprint, value, limit, now))
        elif not fires and open_alert is not None:
            db.execute("update alerts set resolved_at = ? where id = ?", [now, open_alert[0]])
    return new


# --- reading ------------------------------------------------------------------


def pending_deliveries(db: Database, alert_ids: list[int]) -> list[dict[str, Any]]:
    if not alert_ids:
        return []
    marks = ",".join("?" * len(alert_ids))
    rows = db.execute(
        "select d.*, a.message, a.run_id, a.value_usd, a.threshold_usd, a.created_at,"
        f" r.name as rule_name, r.kind as rule_kind from alert_deliveries d"
        " join alerts a on a.id = d.alert_id join alert_rules r on r.id = a.rule_id"
        f" where d.alert_id in ({marks}) and d.status = 'pending' order by d.id",
        alert_ids,
    )
    return [dict(r) for r in rows.fetchall()]


def finish_delivery(
    db: Database, delivery_id: int, ok: bool, attempts: int, error: str | None
) -> None:
    db.execute(
        "update alert_deliveries set status = ?, attempts = ?, error = ?, sent_at = ? where id = ?",
        ["sent" if ok else "failed", attempts, error, time.time() if ok else None, delivery_id],
    )


def list_alerts(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    alerts = [
        dict(r)
        for r in db.execute(
            "select a.*, r.name as rule_name, r.kind as rule_kind from alerts a"
            " join alert_rules r on r.id = a.rule_id order by a.created_at desc, a.id desc limit ?",
            [limit],
        ).fetchall()
    ]
    by_alert: dict[int, list[dict[str, Any]]] = {a["id"]: [] for a in alerts}
    if alerts:
        marks = ",".join("?" * len(alerts))
        for d in db.execute(
            f"select * from alert_deliveries where alert_id in ({marks}) order by id",
            list(by_alert),
        ).fetchall():
            by_alert[d["alert_id"]].append(dict(d))
    for a in alerts:
        a["deliveries"] = by_alert[a["id"]]
    return alerts
