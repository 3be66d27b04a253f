"""Rollups: per-hour and per-day aggregates of runs and evaluations, kept by triggers.

The dashboard, the evals page and the session pages read these small tables
instead of every run in their window, so they cost the same at 1k and at 1M
runs. Triggers on ``runs`` and ``evaluations`` keep them right in the same
transaction as the write, whoever writes (native runs, OTLP ingest, start-up
sweeps, retention deletes): an insert adds a run's contribution, a delete
takes it away, an update adds the difference (or, when the run moves to
another hour, model or session, takes the old row's away and adds the new).

Each table exists twice, ``_hour`` and ``_day``: the 24-hour range reads
hours, the others (whole UTC days and weeks) read days, so a 90-day chart
reads 90 rows per key, not 2,160.

- ``rollup_runs_*`` (period, model): the KPIs, the dashboard charts, the evals
  success rate filtered by model and the per-model breakdown.
- ``rollup_session_*`` (session, period, model): what is filtered or grouped
  by session (evals page, session page's per-model table).
- ``rollup_latency_*`` (period, bucket): a latency histogram whose buckets are
  2^(1/16) apart (bucket ``b`` holds [2^(b/16), 2^((b+1)/16)) ms; -1000 holds 0
  and below), so p50/p95 are read back within 4.5 % (see app.store.rollups).
- ``rollup_evals_*`` (period, metric, model, session): evaluation counts,
  verdicts and value sums, with the evaluated run's model and session.

``period`` is the start (epoch seconds, UTC) of the hour or day of
``runs.started_at`` or ``evaluations.created_at``; a missing model or
session is ''. The UPDATE triggers name their columns (``UPDATE OF``) and
check that one of them changed: the recorder updates ``runs.last_seq`` on
every event, and OTLP ingest moves ``started_at`` on every span, and those
must not cost anything. Rows that fall to zero are deleted, so deleted runs
leave no trace. Existing data is rolled up once here. The SQL is plain
(upserts, floor, log) so that a PostgreSQL port can keep it.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.store.migrations import migration

# Frozen copies of app.store.statuses (a migration must not change when code does).
_ENDED = "('succeeded', 'failed', 'interrupted')"
_FAILED = "('failed', 'interrupted')"
_ACTIVE = "('queued', 'running')"
GRAINS = {"hour": 3600, "day": 86400}


def _period(at: str, seconds: int) -> str:
    return f"(CAST(floor({at} / {seconds}.0) AS INTEGER) * {seconds})"


def _bucket(latency: str) -> str:
    # Capped so that an infinite latency from odd data still has a bucket.
    return (
        f"(CASE WHEN {latency} > 1e15 THEN 799 WHEN {latency} > 0"
        f" THEN CAST(floor(16 * log(2, {latency})) AS INTEGER) ELSE -1000 END)"
    )


# What one run adds to a row: column -> expression over the run row ``{r}`` (new or old).
# Token sums are REAL: two runs near 2^63 tokens (odd data) must not overflow a trigger.
_COMMON = {
    "runs": "1",
    "succeeded": "({r}.status = 'succeeded')",
    "failed": f"({{r}}.status IN {_FAILED})",
    "ended": f"({{r}}.status IN {_ENDED})",
    "input_tokens": "coalesce({r}.input_tokens, 0)",
    "output_tokens": "coalesce({r}.output_tokens, 0)",
    "cost_usd": "coalesce({r}.cost_usd, 0)",
    "latency_n": "({r}.latency_ms IS NOT NULL)",
    "latency_sum": "coalesce({r}.latency_ms, 0)",
}
_RUNS = {
    **_COMMON,
    "active": f"({{r}}.status IN {_ACTIVE})",
    "extra_cost_usd": "coalesce({r}.extra_cost_usd, 0)",
    "unpriced": "coalesce({r}.cost_status IN ('unpriced', 'partial'), 0)",
    "usage_unknown": "(coalesce({r}.usage_unknown_calls, 0) > 0)",
}
_NULLABLE = {"cost_usd", "extra_cost_usd", "latency_sum", "value_sum"}  # inf - inf is NULL


def _keys(table: str, r: str, seconds: int) -> dict[str, str]:
    period = _period(f"{r}.started_at", seconds)
    model = f"coalesce({r}.model, '')"
    if table == "runs":
        return {"period": period, "model": model}
    return {"session": f"coalesce({r}.session_id, '')", "period": period, "model": model}


def _measures(table: str) -> dict[str, str]:
    return _RUNS if table == "runs" else _COMMON


def _add(column: str, amount: str) -> str:
    current = f"coalesce({column}, 0)" if column in _NULLABLE else column
    return f"{column} = {current} + {amount}"


def _upsert(table: str, grain: str, r: str, sign: str) -> str:
    """Add (sign '+') or take away (sign '-') run ``r``'s contribution."""
    keys, measures = _keys(table, r, GRAINS[grain]), _measures(table)
    columns = ", ".join([*keys, *measures])
    values = ", ".join([*keys.values(), *(f"{sign}{e.format(r=r)}" for e in measures.values())])
    updates = ", ".join(_add(c, f"excluded.{c}") for c in measures)
    return (
        f"INSERT INTO rollup_{table}_{grain} ({columns}) VALUES ({values})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates};\n"
    )


def _delta(table: str, grain: str) -> str:
    """The difference between new and old, for a run that stayed in the same row."""
    keys, measures = _keys(table, "new", GRAINS[grain]), _measures(table)
    updates = ", ".join(
        _add(c, f"{e.format(r='new')} - {e.format(r='old')}")
        for c, e in measures.items()
        if c != "runs"
    )
    where = " AND ".join(f"{k} = {v}" for k, v in keys.items())
    return f"UPDATE rollup_{table}_{grain} SET {updates} WHERE {where};\n"


def _prune(table: str, grain: str, counter: str = "runs") -> str:
    """Delete the old row if nothing is left in it (narrowed by key: no scan)."""
    if table == "latency":
        seconds = GRAINS[grain]
        where = f"period = {_period('old.started_at', seconds)} AND bucket = {_bucket('old.latency_ms')}"
    else:
        where = " AND ".join(f"{k} = {v}" for k, v in _keys(table, "old", GRAINS[grain]).items())
    return f"DELETE FROM rollup_{table}_{grain} WHERE {where} AND {counter} = 0;\n"


def _latency(grain: str, r: str, sign: str) -> str:
    return (
        f"INSERT INTO rollup_latency_{grain} (period, bucket, runs, latency_sum)"
        f" SELECT {_period(f'{r}.started_at', GRAINS[grain])}, {_bucket(f'{r}.latency_ms')},"
        f" {sign}1, {sign}{r}.latency_ms WHERE {r}.latency_ms IS NOT NULL"
        " ON CONFLICT (period, bucket) DO UPDATE SET runs = runs + excluded.runs,"
        " latency_sum = coalesce(latency_sum, 0) + excluded.latency_sum;\n"
    )


_EVAL_MEASURES = "n, judged, passed, value_n, value_sum"
_EVAL_UPSERT = (
    " ON CONFLICT (period, metric, model, session) DO UPDATE SET"
    " n = n + excluded.n, judged = judged + excluded.judged, passed = passed + excluded.passed,"
    " value_n = value_n + excluded.value_n,"
    " value_sum = coalesce(value_sum, 0) + excluded.value_sum;\n"
)


def _evals_of_run(grain: str, r: str, sign: str) -> str:
    """Move a run's evaluations under its (new or old) model and session."""
    return (
        f"INSERT INTO rollup_evals_{grain} (period, metric, model, session, {_EVAL_MEASURES})"
        f" SELECT {_period('e.created_at', GRAINS[grain])}, e.metric, coalesce({r}.model, ''),"
        f" coalesce({r}.session_id, ''), {sign}count(*), {sign}count(e.passed),"
        f" {sign}coalesce(sum(e.passed), 0), {sign}count(e.value),"
        f" {sign}coalesce(sum(e.value), 0)"
        f" FROM evaluations e WHERE e.run_id = {r}.id GROUP BY 1, 2" + _EVAL_UPSERT
    )


def _evaluation(grain: str, e: str, sign: str) -> str:
    return (
        f"INSERT INTO rollup_evals_{grain} (period, metric, model, session, {_EVAL_MEASURES})"
        f" SELECT {_period(f'{e}.created_at', GRAINS[grain])}, {e}.metric,"
        f" coalesce(r.model, ''), coalesce(r.session_id, ''), {sign}1,"
        f" {sign}({e}.passed IS NOT NULL), {sign}coalesce({e}.passed, 0),"
        f" {sign}({e}.value IS NOT NULL), {sign}coalesce({e}.value, 0)"
        f" FROM runs r WHERE r.id = {e}.run_id" + _EVAL_UPSERT
    )


# The columns a rollup reads: an update of any other column (last_seq, response...) fires nothing.
_RUN_COLUMNS = [
    "started_at", "model", "session_id", "status", "input_tokens", "output_tokens", "cost_usd",
    "extra_cost_usd", "cost_status", "usage_unknown_calls", "latency_ms",
]  # fmt: skip
_SAME_ROWS = (
    f"{_period('old.started_at', 3600)} = {_period('new.started_at', 3600)}"
    " AND coalesce(old.model, '') = coalesce(new.model, '')"
    " AND coalesce(old.session_id, '') = coalesce(new.session_id, '')"
)
_MEASURES_CHANGED = " OR ".join(f"old.{c} IS NOT new.{c}" for c in _RUN_COLUMNS[3:])


def _per_table(make: object, *args: str) -> str:
    return "".join(
        make(table, grain, *args)  # type: ignore[operator]
        for table in ("runs", "session")
        for grain in GRAINS
    )


def _per_grain(make: object, *args: str) -> str:
    return "".join(make(grain, *args) for grain in GRAINS)  # type: ignore[operator]


def _per_grain_latency_prune() -> str:
    return "".join(_prune("latency", g) for g in GRAINS)


def _prune_runs() -> str:
    return _per_table(_prune)


def _prune_moved_evals() -> str:
    return "".join(
        f"DELETE FROM rollup_evals_{g} WHERE n = 0 AND period IN"
        f" (SELECT {_period('created_at', s)} FROM evaluations WHERE run_id = old.id)"
        " AND model = coalesce(old.model, '') AND session = coalesce(old.session_id, '');\n"
        for g, s in GRAINS.items()
    )


def _prune_evaluation() -> str:
    return "".join(
        f"DELETE FROM rollup_evals_{g} WHERE period = {_period('old.created_at', s)}"
        " AND metric = old.metric AND n = 0;\n"
        for g, s in GRAINS.items()
    )


TRIGGERS = [
    f"""CREATE TRIGGER rollup_runs_insert AFTER INSERT ON runs BEGIN
{_per_table(_upsert, "new", "+")}{_per_grain(_latency, "new", "+")}END""",
    f"""CREATE TRIGGER rollup_runs_delete AFTER DELETE ON runs BEGIN
{_per_table(_upsert, "old", "-")}{_per_grain(_latency, "old", "-")}{_prune_runs()}
{_per_grain_latency_prune()}END""",
    # The recorder's updates (tokens, cost, status) stay in the run's rows: one UPDATE each.
    f"""CREATE TRIGGER rollup_runs_update AFTER UPDATE OF {", ".join(_RUN_COLUMNS)} ON runs
WHEN {_SAME_ROWS} AND ({_MEASURES_CHANGED})
BEGIN
{_per_table(_delta)}END""",
    f"""CREATE TRIGGER rollup_runs_move AFTER UPDATE OF started_at, model, session_id ON runs
WHEN NOT ({_SAME_ROWS})
BEGIN
{_per_table(_upsert, "old", "-")}{_per_table(_upsert, "new", "+")}{_prune_runs()}END""",
    f"""CREATE TRIGGER rollup_latency_update AFTER UPDATE OF started_at, latency_ms ON runs
WHEN old.latency_ms IS NOT new.latency_ms
  OR {_period("old.started_at", 3600)} <> {_period("new.started_at", 3600)}
BEGIN
{_per_grain(_latency, "old", "-")}{_per_grain(_latency, "new", "+")}
{_per_grain_latency_prune()}END""",
    f"""CREATE TRIGGER rollup_run_evals_update AFTER UPDATE OF model, session_id ON runs
WHEN coalesce(old.model, '') <> coalesce(new.model, '')
  OR coalesce(old.session_id, '') <> coalesce(new.session_id, '')
BEGIN
{_per_grain(_evals_of_run, "old", "-")}{_per_grain(_evals_of_run, "new", "+")}
{_prune_moved_evals()}END""",
    f"""CREATE TRIGGER rollup_evals_insert AFTER INSERT ON evaluations BEGIN
{_per_grain(_evaluation, "new", "+")}END""",
    f"""CREATE TRIGGER rollup_evals_delete AFTER DELETE ON evaluations BEGIN
{_per_grain(_evaluation, "old", "-")}
{_prune_evaluation()}END""",
]


def _tables(grain: str) -> list[str]:
    common = (
        "runs INTEGER NOT NULL, succeeded INTEGER NOT NULL, failed INTEGER NOT NULL,"
        " ended INTEGER NOT NULL, input_tokens REAL NOT NULL, output_tokens REAL NOT NULL,"
        " cost_usd REAL, latency_n INTEGER NOT NULL, latency_sum REAL"
    )
    return [
        f"""CREATE TABLE rollup_runs_{grain} (period INTEGER NOT NULL, model TEXT NOT NULL,
  {common}, active INTEGER NOT NULL, extra_cost_usd REAL, unpriced INTEGER NOT NULL,
  usage_unknown INTEGER NOT NULL, PRIMARY KEY (period, model))""",
        f"""CREATE TABLE rollup_session_{grain} (session TEXT NOT NULL,
  period INTEGER NOT NULL, model TEXT NOT NULL, {common},
  PRIMARY KEY (session, period, model))""",
        f"CREATE INDEX rollup_session_{grain}_period ON rollup_session_{grain} (period)",
        f"""CREATE TABLE rollup_latency_{grain} (period INTEGER NOT NULL,
  bucket INTEGER NOT NULL, runs INTEGER NOT NULL, latency_sum REAL,
  PRIMARY KEY (period, bucket))""",
        f"""CREATE TABLE rollup_evals_{grain} (period INTEGER NOT NULL, metric TEXT NOT NULL,
  model TEXT NOT NULL, session TEXT NOT NULL, n INTEGER NOT NULL, judged INTEGER NOT NULL,
  passed INTEGER NOT NULL, value_n INTEGER NOT NULL, value_sum REAL,
  PRIMARY KEY (period, metric, model, session))""",
    ]


def _aggregate(expression: str) -> str:
    """A per-run expression summed over a group (``total`` for the REAL sums)."""
    return f"total({expression})" if "coalesce" in expression else f"sum({expression})"


def _backfill(grain: str) -> list[str]:
    seconds = GRAINS[grain]
    out = []
    for table in ("runs", "session"):
        keys, measures = _keys(table, "runs", seconds), _measures(table)
        columns = ", ".join([*keys, *measures])
        sums = ", ".join(_aggregate(e.format(r="runs")) for e in measures.values())
        groups = ", ".join(str(i + 1) for i in range(len(keys)))
        out.append(
            f"INSERT INTO rollup_{table}_{grain} ({columns}) SELECT {', '.join(keys.values())},"
            f" {sums} FROM runs WHERE true GROUP BY {groups}"
        )
    out.append(
        f"INSERT INTO rollup_latency_{grain} (period, bucket, runs, latency_sum)"
        f" SELECT {_period('started_at', seconds)}, {_bucket('latency_ms')}, count(*),"
        " total(latency_ms)"
        " FROM runs WHERE latency_ms IS NOT NULL GROUP BY 1, 2"
    )
    out.append(
        f"INSERT INTO rollup_evals_{grain} (period, metric, model, session, {_EVAL_MEASURES})"
        f" SELECT {_period('e.created_at', seconds)}, e.metric, coalesce(r.model, ''),"
        " coalesce(r.session_id, ''), count(*), count(e.passed), coalesce(sum(e.passed), 0),"
        " count(e.value), total(e.value)"
        " FROM evaluations e JOIN runs r ON r.id = e.run_id WHERE true GROUP BY 1, 2, 3, 4"
    )
    return out


@migration("0013_rollups")
def rollups(db: Database) -> None:
    for grain in GRAINS:
        for statement in _tables(grain) + _backfill(grain):
            db.execute(statement)
    for statement in TRIGGERS:
        db.execute(statement)
