"""Filters and search for the runs list: status, model, session, text, date range.

``parse_filters`` turns query parameters into a :class:`RunFilter` (or raises
``InputError`` saying what is wrong); ``filtered_runs`` and ``count_filtered``
run it. Every filter has an index to use (``runs(status, started_at)``,
``runs(model, started_at)``, ``runs(session_id, started_at)``,
``runs(started_at)``) and text goes through the ``runs_fts`` full-text index,
so the list stays fast at 100k runs.

``status=failed`` means every status that counts as a failure
(``app.store.statuses.FAILED_LIKE``: failed and interrupted), so the list
shows what the FAILED KPI counts; ``status=interrupted`` narrows to those
alone. An expression index over that set (migration 0009) keeps it fast.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from sqlite_utils import Database

from app.core.errors import InputError
from app.store.backend import is_postgres
from app.store.rollups import total_runs
from app.store.statuses import ALL, FAILED, FAILED_LIKE, sql_list

# The expression of the ``runs_failed_like`` index (migration 0009), spelt the same
# way so SQLite matches the two.
FAILED_LIKE_TERM = f"(runs.status in {sql_list(FAILED_LIKE)}) = 1"
# PostgreSQL's index on the same expression (a boolean there, not 1 or 0).
FAILED_LIKE_PG = f"(runs.status in {sql_list(FAILED_LIKE)})"
FILTER_PARAMS = ("q", "status", "model", "session", "from", "to")  # URL parameter names
MAX_QUERY_CHARS = 200
COUNT_CAP = 10_000  # filtered lists say "10,000+" rather than count every match
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class RunFilter:
    status: str = ""
    model: str = ""
    session: str = ""
    q: str = ""
    date_from: str = ""  # YYYY-MM-DD, UTC, inclusive
    date_to: str = ""  # YYYY-MM-DD, UTC, inclusive

    @property
    def active(self) -> bool:
        return any(asdict(self).values())

    def query_params(self) -> dict[str, str]:
        """The filter as URL parameters (the names the form and the API use)."""
        names = {"date_from": "from", "date_to": "to"}
        return {names.get(k, k): v for k, v in asdict(self).items() if v}

    def query_string(self) -> str:
        """``a=1&b=2&`` (with the trailing ``&``), ready to prefix ``page=N``."""
        params = self.query_params()
        return urlencode(params) + "&" if params else ""


def _day(value: str, name: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{name} must be a date like 2026-01-31, got {value!r}") from None
    return value


def parse_filters(params: dict[str, Any]) -> RunFilter:
    def text(name: str, limit: int = 200) -> str:
        value = params.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InputError(f"{name} must be a string")
        value = value.strip()
        if len(value) > limit:
            raise InputError(f"{name} is longer than {limit} characters")
        return value

    status = text("status")
    if status and status not in ALL:
        raise InputError(f"status must be one of {', '.join(ALL)}")
    date_from = _day(text("from"), "from") if text("from") else ""
    date_to = _day(text("to"), "to") if text("to") else ""
    if date_from and date_to and date_to < date_from:
        raise InputError("the date range ends before it starts")
    return RunFilter(
        status=status,
        model=text("model"),
        session=text("session"),
        q=text("q", MAX_QUERY_CHARS),
        date_from=date_from,
        date_to=date_to,
    )


def _timestamp(day: str, plus_days: int = 0) -> float:
    date = dt.date.fromisoformat(day) + dt.timedelta(days=plus_days)
    return dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).timestamp()


def fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must appear, as a word or a word's start.

    Words are quoted, so FTS5 syntax in the input (AND, NEAR, quotes, *) is just text.
    """
    return " ".join(f'"{w}"*' for w in _WORD.findall(text))


def tsquery(text: str) -> str:
    """User text as a PostgreSQL ``tsquery`` with the meaning of :func:`fts_query`."""
    words = (w.replace("\\", "\\\\").replace("'", "''") for w in _WORD.findall(text))
    return " & ".join(f"'{w}':*" for w in words)


def _where(f: RunFilter, pg: bool = False) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if f.status == FAILED:
        clauses.append(FAILED_LIKE_PG if pg else FAILED_LIKE_TERM)
    elif f.status:
        clauses.append("runs.status = ?")
        args.append(f.status)
    if f.model:
        clauses.append("runs.model = ?")
        args.append(f.model)
    if f.session:
        clauses.append("runs.session_id = ?")
        args.append(f.session)
    if f.date_from:
        clauses.append("runs.started_at >= ?")
        args.append(_timestamp(f.date_from))
    if f.date_to:
        clauses.append("runs.started_at < ?")
        args.append(_timestamp(f.date_to, 1))
    if f.q and not fts_query(f.q):
        # Only punctuation or symbols: nothing for the index, look for the text itself.
        clauses.append("(instr(runs.prompt, ?) > 0 or instr(coalesce(runs.response, ''), ?) > 0)")
        args.extend([f.q, f.q])
    return clauses, args


def _matching(f: RunFilter, pg: bool = False) -> tuple[str, list[Any], str]:
    """FROM/WHERE of the runs matching ``f``, its arguments, and the ORDER BY to use.

    Without text: newest first by ``started_at``, ties broken by rowid, so every
    filter's index covers the ordering and a deep page skips index entries only.
    With text: the full-text index drives, newest recorded first (rowid order,
    which FTS5 walks backwards and stops after a page): a word found in most
    runs costs as little as a rare one. With text and a session or date range,
    that index drives instead (see below), newest first as without text.

    On PostgreSQL the words are matched against ``runs.search`` (a tsvector with a
    GIN index) and the planner chooses which index drives.
    """
    if pg:
        return _matching_pg(f)
    match = fts_query(f.q) if f.q else ""
    clauses, args = _where(f)
    if match and (f.session or f.date_from or f.date_to):
        # A session or a date range usually narrows more than words do: walk that
        # index and test each run against the set of matches, built once. The unary
        # + keeps SQLite from driving the query from that set instead.
        clauses.append("+runs.rowid in (select rowid from runs_fts where runs_fts match ?)")
        args.append(match)
    elif match:
        clauses.insert(0, "runs_fts match ?")
        where = " where " + " and ".join(clauses)
        source = "runs_fts join runs on runs.rowid = runs_fts.rowid"
        return f"{source}{where}", [match, *args], "runs_fts.rowid desc"
    where = (" where " + " and ".join(clauses)) if clauses else ""
    if f.status == FAILED:
        # The failure index holds (failed?, started_at, status): ties on started_at
        # break by status first, so the index still gives the whole order.
        return f"runs{where}", args, "runs.started_at desc, runs.status desc, runs.rowid desc"
    return f"runs{where}", args, "runs.started_at desc, runs.rowid desc"


def _matching_pg(f: RunFilter) -> tuple[str, list[Any], str]:
    clauses, args = _where(f, pg=True)
    if f.q and (query := tsquery(f.q)):
        clauses.insert(0, "runs.search @@ to_tsquery('agentop_search', ?)")
        args.insert(0, query)
    where = (" where " + " and ".join(clauses)) if clauses else ""
    return f"runs{where}", args, "runs.started_at desc, runs.rowid desc"


def filtered_runs(
    db: Database, f: RunFilter, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    source, args, order = _matching(f, is_postgres(db))
    # Page through rowids first (index only), then read the page's rows.
    rows = db.query(
        f"select * from runs where rowid in (select runs.rowid from {source}"
        f" order by {order} limit ? offset ?) order by {order.replace('runs_fts.', 'runs.')}",
        [*args, limit, offset],
    )
    out = []
    for r in rows:
        row = dict(r)
        if isinstance(row.get("params"), str):
            try:
                row["params"] = json.loads(row["params"])
            except json.JSONDecodeError:
                pass
        out.append(row)
    return out


def count_filtered(db: Database, f: RunFilter, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many runs match, counted up to ``cap``; and whether there are more than that.

    All runs are counted exactly from the rollup (``rollups.total_runs``); a
    filtered count stops at the cap, so a search matching most runs stays cheap.
    """
    if not f.active:
        return total_runs(db), False
    source, args, _ = _matching(f, is_postgres(db))
    n = db.execute(
        f"select count(*) from (select 1 from {source} limit ?) as matched", [*args, cap + 1]
    ).fetchone()[0]
    return min(n, cap), n > cap
