"""Seeding a PostgreSQL studio in bulk for ``bench/runs_list.py``, and the proof it is exact.

The runs and evaluations come from ``runs_list.seed_batches`` (the same rng
sequence as the SQLite seed). Row by row, the studio's triggers (baseline.sql:
``rollup_*`` and ``run_sessions_*``) keep the rollups and the session totals,
at 1.7k-3k runs/s. :func:`bulk_seed` instead writes the rows with ``COPY`` on a
connection with ``session_replication_role = replica`` (the triggers, and the
foreign-key checks, which are triggers too, do not fire; the bench server's
user is a superuser; else ``ALTER TABLE … DISABLE TRIGGER USER``), then builds the rollup tables and ``run_sessions`` with
one ``INSERT … SELECT … GROUP BY`` each (:data:`BACKFILL`), all in one
transaction, then ``VACUUM ANALYZE`` (so that no autovacuum of the new rows
runs during the timed pages, and the planner knows the tables).

Why the backfill equals the triggers: a rollup row is the sum, over the runs
of its key, of what the insert trigger adds per run; each column below is
``sum()`` of the very per-run expression ``rollup_runs_add``,
``rollup_latency_add`` and ``rollup_evaluation_add`` add (``NaN`` made NULL as
they make it), grouped by the same keys (``rollup_period``,
``rollup_latency_bucket``, ``coalesce(…, '')``). A session's row is inserted by
its first run (``created_at`` = that run's ``started_at``, ids in order of first
appearance), and each run adds one to ``runs``, its tokens and cost, and its
ended or failed flag; ``last_run_at`` ends as the greatest ``started_at``. The
float sums may differ in the last bits when the additions come in another
order. Not reproduced: a trigger that meets a NaN sum (inf - inf) turns it to
NULL and goes on from 0, a sum over the group stays NULL; the seeded rows hold
only finite numbers. :func:`check_seed` compares both ways cell by cell.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.pg import drop_database, fresh_database

# One batch of seeded rows: (runs rows, evaluations rows), in the given column orders.
Batch = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]
GRAINS = {"hour": 3600, "day": 86400}

_ENDED = "('succeeded', 'failed', 'interrupted')"
_FAILED = "('failed', 'interrupted')"
# What rollup_runs_add adds for one run r (baseline.sql), per column of rollup_session_*.
_COMMON = {
    "runs": "count(*)",
    "succeeded": "sum((status = 'succeeded')::int)",
    "failed": f"sum((status IN {_FAILED})::int)",
    "ended": f"sum((status IN {_ENDED})::int)",
    "input_tokens": "sum(coalesce(input_tokens, 0)::float8)",
    "output_tokens": "sum(coalesce(output_tokens, 0)::float8)",
    "cost_usd": "nullif(sum(coalesce(cost_usd, 0)), 'NaN')",
    "latency_n": "sum((latency_ms IS NOT NULL)::int)",
    "latency_sum": "nullif(sum(coalesce(latency_ms, 0)), 'NaN')",
}
# ... and the columns only rollup_runs_* has.
_RUNS = {
    **_COMMON,
    "active": "sum((status IN ('queued', 'running'))::int)",
    "extra_cost_usd": "nullif(sum(coalesce(extra_cost_usd, 0)), 'NaN')",
    "unpriced": "sum(coalesce((cost_status IN ('unpriced', 'partial'))::int, 0))",
    "usage_unknown": "sum((coalesce(usage_unknown_calls, 0) > 0)::int)",
}


def _rollups(grain: str, seconds: int) -> list[str]:
    period = f"rollup_period(started_at, {seconds})"
    runs_keys = {"period": period, "model": "coalesce(model, '')"}
    session_keys = {"session": "coalesce(session_id, '')", **runs_keys}
    out = []
    for table, keys, measures in (("runs", runs_keys, _RUNS), ("session", session_keys, _COMMON)):
        groups = ", ".join(str(n + 1) for n in range(len(keys)))
        out.append(
            f"INSERT INTO rollup_{table}_{grain} ({', '.join([*keys, *measures])})"
            f" SELECT {', '.join([*keys.values(), *measures.values()])} FROM runs GROUP BY {groups}"
        )
    out.append(
        f"INSERT INTO rollup_latency_{grain} (period, bucket, runs, latency_sum)"
        f" SELECT {period}, rollup_latency_bucket(latency_ms), count(*),"
        " nullif(sum(latency_ms), 'NaN') FROM runs WHERE latency_ms IS NOT NULL GROUP BY 1, 2"
    )
    # rollup_evaluation_add: under the evaluated run's model and session, none without a run.
    out.append(
        f"INSERT INTO rollup_evals_{grain} (period, metric, model, session, n, judged, passed,"
        " value_n, value_sum)"
        f" SELECT rollup_period(e.created_at, {seconds}), e.metric, coalesce(r.model, ''),"
        " coalesce(r.session_id, ''), count(*), count(e.passed), coalesce(sum(e.passed), 0),"
        " count(e.value), nullif(sum(coalesce(e.value, 0)), 'NaN')"
        " FROM evaluations e JOIN runs r ON r.id = e.run_id GROUP BY 1, 2, 3, 4"
    )
    return out


# run_sessions_insert: the first run of a name inserts its row (ids in that order).
_SESSIONS = (
    "INSERT INTO run_sessions (name, created_at, last_run_at, runs, finished, failed,"
    " input_tokens, output_tokens, cost_usd)"
    " SELECT session_id, (array_agg(started_at ORDER BY rowid))[1], max(started_at), count(*),"
    f" sum((status IN {_ENDED})::int), sum((status IN {_FAILED})::int),"
    " sum(coalesce(input_tokens, 0)), sum(coalesce(output_tokens, 0)),"
    " nullif(sum(coalesce(cost_usd, 0)), 'NaN')"
    " FROM runs WHERE session_id IS NOT NULL GROUP BY session_id ORDER BY min(rowid)"
)

BACKFILL = [s for grain, seconds in GRAINS.items() for s in _rollups(grain, seconds)] + [_SESSIONS]
# The tables the triggers keep, with the key each is compared in order of.
KEPT = {
    **{f"rollup_runs_{g}": "period, model" for g in GRAINS},
    **{f"rollup_session_{g}": "session, period, model" for g in GRAINS},
    **{f"rollup_latency_{g}": "period, bucket" for g in GRAINS},
    **{f"rollup_evals_{g}": "period, metric, model, session" for g in GRAINS},
    "run_sessions": "id",
}


def kept_server() -> tuple[str, Path]:
    """A new cluster as ``bench.pg.postgres_server`` starts one (fsync on), left running
    for ``--keep``: its URL and its folder."""
    from bench.pg import DURABLE
    from tests.postgres_server import start_postgres

    url, _stop, cluster = start_postgres(DURABLE)
    return url, cluster


def stop_command(cluster: Path) -> str:
    """The shell command that stops a cluster from :func:`kept_server`."""
    from tests.postgres_server import postgres_bin

    return f"runuser -u postgres -- {postgres_bin()}/pg_ctl -D {cluster}/data stop"


def migrated(url: str) -> bool:
    """Whether the database at ``url`` has the studio's tables."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('public.runs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def migrate(url: str) -> None:
    """The app's own migrations (baseline.sql and later) on an empty database."""
    from app.store import Store

    with tempfile.TemporaryDirectory(prefix="agentop-bench-") as folder:
        Store(Path(folder) / "agentop.db", url=url).close()


def bulk_seed(
    url: str, batches: Iterable[Batch], run_columns: Sequence[str], eval_columns: Sequence[str]
) -> dict[str, float]:
    """COPY the rows with the triggers off, then the backfill; the seconds of each step."""
    took = {}
    started = time.perf_counter()
    evaluations: list[tuple[Any, ...]] = []
    with psycopg.connect(url) as conn:
        altered = _triggers_off(conn)
        conn.execute("SET synchronous_commit = off")  # one commit: durability costs nothing
        cur = conn.cursor()
        # One COPY for all the runs, streamed while they are generated: the
        # server indexes on one core while Python draws the rows on the other.
        with cur.copy(f"COPY runs ({', '.join(run_columns)}) FROM STDIN") as copy:
            for runs, evals in batches:
                for row in runs:
                    copy.write_row(row)
                evaluations.extend(evals)
        with cur.copy(f"COPY evaluations ({', '.join(eval_columns)}) FROM STDIN") as copy:
            for row in evaluations:
                copy.write_row(row)
        took["copy"] = time.perf_counter() - started
        for statement in BACKFILL:
            cur.execute(statement)
        for table in altered:
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        conn.commit()
        took["backfill"] = time.perf_counter() - started - took["copy"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    took["vacuum"] = time.perf_counter() - started - took["copy"] - took["backfill"]
    took["total"] = time.perf_counter() - started
    return took


def _triggers_off(conn: psycopg.Connection[Any]) -> list[str]:
    """Switch the triggers off for this connection's load; the tables to switch back on.

    ``session_replication_role = replica`` (a superuser's, as the bench server's
    user is) leaves out user and foreign-key triggers for this session only. Else
    the tables' owner disables the user triggers inside the load's transaction:
    its lock keeps every other session out until they are on again at commit.
    """
    try:
        with conn.transaction():
            conn.execute("SET session_replication_role = replica")
        return []
    except psycopg.errors.InsufficientPrivilege:
        tables = ["runs", "evaluations"]
        for table in tables:
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        return tables


def trigger_seed(
    url: str, batches: Iterable[Batch], run_columns: Sequence[str], eval_columns: Sequence[str]
) -> float:
    """Insert the rows batch by batch with every trigger on, as the SQLite seed does."""
    started = time.perf_counter()
    runs_sql = _insert("runs", run_columns)
    evals_sql = _insert("evaluations", eval_columns)
    with psycopg.connect(url) as conn:
        cur = conn.cursor()
        for runs, evals in batches:
            cur.executemany(runs_sql, runs)
            cur.executemany(evals_sql, evals)
            conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def _insert(table: str, columns: Sequence[str]) -> psycopg.sql.Composed:
    return psycopg.sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        psycopg.sql.Identifier(table),
        psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, columns)),
        psycopg.sql.SQL(", ").join(psycopg.sql.Placeholder() * len(columns)),
    )


def differences(url_a: str, url_b: str, limit: int = 10) -> list[str]:
    """Every table the triggers keep, compared cell by cell (floats within 1e-9)."""
    out = []
    with psycopg.connect(url_a) as a, psycopg.connect(url_b) as b:
        for table, key in KEPT.items():
            sql = f"SELECT * FROM {table} ORDER BY {key}"
            rows_a, rows_b = a.execute(sql).fetchall(), b.execute(sql).fetchall()
            if len(rows_a) != len(rows_b):
                out.append(f"{table}: {len(rows_a)} rows against {len(rows_b)}")
                continue
            for row_a, row_b in zip(rows_a, rows_b, strict=True):
                if not all(map(_same, row_a, row_b)):
                    out.append(f"{table}: {row_a} against {row_b}")
    return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
    return bool(x == y)


def row_counts(url: str) -> dict[str, int]:
    """Rows of each table :func:`differences` compares, plus runs and evaluations."""
    with psycopg.connect(url) as conn:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore
            for t in ["runs", "evaluations", *KEPT]
        }


def check_seed(
    server: str,
    make_batches: Callable[[], Iterable[Batch]],
    run_columns: Sequence[str],
    eval_columns: Sequence[str],
    keep: bool = False,
) -> int:
    """Seed the same rows with the triggers and in bulk into two fresh databases on
    ``server``, compare what the triggers keep; 0 when equal, else 1."""
    by_triggers, in_bulk = fresh_database(server, "triggers"), fresh_database(server, "bulk")
    try:
        migrate(by_triggers)
        migrate(in_bulk)
        trigger_s = trigger_seed(by_triggers, make_batches(), run_columns, eval_columns)
        bulk = bulk_seed(in_bulk, make_batches(), run_columns, eval_columns)
        counts = row_counts(by_triggers)
        print(f"  triggers      {trigger_s:.1f} s ({counts['runs'] / trigger_s:,.0f} runs/s)")
        print(
            f"  bulk          {bulk['total']:.1f} s ({counts['runs'] / bulk['total']:,.0f} runs/s;"
            f" COPY {bulk['copy']:.1f} s, backfill {bulk['backfill']:.1f} s,"
            f" VACUUM ANALYZE {bulk['vacuum']:.1f} s)"
        )
        print("  rows          " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
        found = differences(by_triggers, in_bulk)
        if row_counts(in_bulk) != counts:
            found.insert(0, f"row counts differ: {row_counts(in_bulk)}")
        for line in found:
            print("  DIFFERENT     " + line)
        print(
            "  result        "
            + ("different" if found else "equal, cell by cell (floats within 1e-9)")
        )
        if keep:
            print(f"  kept          {by_triggers}\n                {in_bulk}")
        return 1 if found else 0
    finally:
        if not keep:
            drop_database(server, by_triggers)
            drop_database(server, in_bulk)
