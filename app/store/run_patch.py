"""A run row's changes from several events, gathered and written as one UPDATE.

Every UPDATE of a run's totals, status or timing fires the rollup triggers
(m0013): a dozen upserts into the hour and day tables. An event's
projection (``app.store.events``) therefore never updates the run row
itself; it adds to a :class:`RunPatch`, which ``record_event`` writes at
its end, with the run's ``last_seq`` in the same statement. A caller that
records many events of one run in one write (OTLP ingest: a trace's spans)
passes its own patch and writes it once, so the triggers run once per trace
instead of once per event, and the events' rows go in one ``executemany``.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from app.pricing.costs import merge_status
from app.store.token_runs import INSERT_EVENT


class RunPatch:
    """What recorded events change on one run's row, not written yet.

    ``prices``: a memo of price look-ups (``app.pricing.tables.lookup``),
    shared by the patches of one write so a batch reads each price once.
    """

    def __init__(self, run_id: str, prices: dict[Any, Any] | None = None) -> None:
        self.run_id = run_id
        self.prices: dict[Any, Any] = {} if prices is None else prices
        self.sets: dict[str, Any] = {}
        self.adds: dict[str, float] = {}
        self.cost_statuses: list[str] = []
        self.started_at: float | None = None  # the run starts no later than this
        self.ended_at: float | None = None  # its latency runs to this from its start
        self.events: list[tuple[Any, ...]] = []  # rows for INSERT_EVENT

    def set(self, **columns: Any) -> None:
        self.sets.update(columns)

    def add(self, cost_status: str | None = None, **totals: float) -> None:
        for name, value in totals.items():
            if value:
                self.adds[name] = self.adds.get(name, 0) + value
        if cost_status is not None:
            self.cost_statuses.append(cost_status)

    def start_by(self, at: float) -> None:
        self.started_at = at if self.started_at is None else min(self.started_at, at)

    def end_at(self, at: float) -> None:
        self.ended_at = at

    def insert_event(self, row: tuple[Any, ...]) -> None:
        self.events.append(row)

    def write(self, db: Database) -> None:
        """Insert the gathered events, then update the run row once; start afresh."""
        if self.events:
            db.conn.executemany(INSERT_EVENT, self.events)
            self.events = []
        assignments: list[str] = []
        values: list[Any] = []
        for name, value in self.sets.items():
            if name == "response":  # an end without a response keeps the one the run has
                assignments.append("response = coalesce(?, response)")
            elif name == "prompt":  # the first prompt wins
                assignments.append(
                    "prompt = case when prompt is null or prompt = '' then ? else prompt end"
                )
            else:
                assignments.append(f"{name} = ?")
            values.append(value)
        for name, value in self.adds.items():
            assignments.append(f"{name} = {name} + ?")
            values.append(value)
        if self.cost_statuses:
            current = db.execute(
                "select cost_status from runs where id = ?", [self.run_id]
            ).fetchone()
            status = current[0] if current else None
            for each in self.cost_statuses:
                status = merge_status(status, each)
            assignments.append("cost_status = ?")
            values.append(status)
        # SQLite evaluates every right-hand side against the row as it was, so the
        # latency is measured from the start this same statement sets.
        start = "started_at" if self.started_at is None else "min(started_at, ?)"
        if self.started_at is not None:
            assignments.append(f"started_at = {start}")
            values.append(self.started_at)
        if self.ended_at is not None:
            assignments.append(f"latency_ms = (? - {start}) * 1000")
            values.append(self.ended_at)
            if self.started_at is not None:
                values.append(self.started_at)
        if assignments:
            db.execute(
                f"update runs set {', '.join(assignments)} where id = ?", [*values, self.run_id]
            )
        self.sets, self.adds, self.cost_statuses = {}, {}, []
        self.started_at = self.ended_at = None
