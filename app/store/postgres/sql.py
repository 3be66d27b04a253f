"""The studio's SQL, written for SQLite, as PostgreSQL reads it.

Store code keeps one copy of each query, in the SQL both databases share. This
module turns the few SQLite spellings it uses into PostgreSQL's, token by token
(string literals and quoted names are left alone), and caches the result:

- placeholders ``?`` and ``:name`` become psycopg's ``%s`` and ``%(name)s``, and a
  literal ``%`` is doubled;
- ``[name]`` (sqlite-utils' quoting) becomes ``"name"``;
- ``insert or ignore`` becomes ``insert … on conflict do nothing``, and
  ``insert or replace`` an upsert on the table's primary key (``REPLACE_KEYS``);
- ``min(a, b)`` / ``max(a, b)`` (SQLite's scalar forms) become ``least`` / ``greatest``;
- ``cast(x as integer)`` truncates toward zero as SQLite does (PostgreSQL rounds),
  ``as real`` is double precision (PostgreSQL's ``real`` is single precision);
- ``like`` is ``ilike``: SQLite's LIKE ignores ASCII case;
- ``begin immediate`` is a plain ``begin``; ``ifnull`` is ``coalesce``.

Functions PostgreSQL lacks (``total``, ``instr``, ``json_extract``, ``json_valid``,
``round(float, n)``) are created in the database instead (``compat.sql``), so the
query text needs no change for them.
"""

from __future__ import annotations

import functools
import re

# Two words SQLite reads one way and PostgreSQL another (see the module docstring).
_PAIRS = {
    ("begin", "immediate"): "begin",
    ("as", "real"): "as double precision",  # PostgreSQL's real is single precision
    ("as", "integer"): "as bigint",
}
# Tables written with ``insert or replace``: the key their conflict is on.
REPLACE_KEYS = {"storage_probe": "id"}

_TOKEN = re.compile(
    r"""
    (?P<literal>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<bracket>\[[A-Za-z_][A-Za-z0-9_ ]*\])
  | (?P<comment>--[^\n]*)
  | (?P<cast>::)
  | (?P<named>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<qmark>\?)
  | (?P<percent>%)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
  | (?P<other>\s+|.)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(sql: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(sql)]


def _match_close(tokens: list[tuple[str, str]], open_at: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``open_at``."""
    depth = 0
    for i in range(open_at, len(tokens)):
        kind = tokens[i][0]
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses in SQL")


def _next_word(tokens: list[tuple[str, str]], start: int) -> int:
    """Index of the next non-blank token at or after ``start`` (len when none)."""
    i = start
    while i < len(tokens) and tokens[i][0] in ("other", "comment") and not tokens[i][1].strip():
        i += 1
    return i


def _top_level_commas(tokens: list[tuple[str, str]], open_at: int, close_at: int) -> int:
    depth, commas = 0, 0
    for kind, _ in tokens[open_at + 1 : close_at]:
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
        elif kind == "comma" and depth == 0:
            commas += 1
    return commas


def _rewrite(tokens: list[tuple[str, str]]) -> str:
    out: list[str] = []
    tail = ""  # appended at the end of the statement (insert or ignore / replace)
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        low = text.lower()
        if kind == "qmark":
            out.append("%s")
        elif kind == "named":
            out.append(f"%({text[1:]})s")
        elif kind == "percent":
            out.append("%%")
        elif kind == "literal":
            out.append(text.replace("%", "%%"))  # psycopg reads every % in the text
        elif kind == "bracket":
            out.append(f'"{text[1:-1]}"')
        elif kind == "word":
            j = _next_word(tokens, i + 1)
            nxt = tokens[j][1].lower() if j < len(tokens) else ""
            if low == "insert" and nxt == "or":
                k = _next_word(tokens, j + 1)
                what = tokens[k][1].lower()
                if what == "ignore":
                    tail = " on conflict do nothing"
                elif what == "replace":
                    tail = _replace_tail(tokens, k + 1)
                else:
                    raise ValueError(f"insert or {what}: not supported on PostgreSQL")
                out.append("insert")
                i = k + 1
                continue
            if (low, nxt) in _PAIRS:
                out.append(_PAIRS[low, nxt])
                i = j + 1
                continue
            if low == "like":
                out.append("ilike")
            elif low == "ifnull" and nxt == "(":
                out.append("coalesce")
            elif low in ("min", "max") and nxt == "(":
                close = _match_close(tokens, j)
                scalar = _top_level_commas(tokens, j, close) > 0
                out.append(("least" if low == "min" else "greatest") if scalar else text)
            elif low == "cast" and nxt == "(":
                close = _match_close(tokens, j)
                body = "".join(t for _, t in tokens[j + 1 : close]).rstrip().lower()
                if body.endswith(" as integer"):
                    # cast(trunc(x) as bigint): SQLite truncates, PostgreSQL rounds; the
                    # float cast lets x be text (json_extract's result) as in SQLite.
                    out.append("cast(trunc(cast(")
                    as_at = max(n for n in range(j, close) if tokens[n][1].lower() == "as")
                    tokens = [
                        *tokens[:as_at],
                        ("other", " as double precision)) "),
                        *tokens[as_at:],
                    ]
                    i = j + 1
                    continue
                out.append(text)
            else:
                out.append(text)
        else:
            out.append(text)
        i += 1
    sql = "".join(out)
    if tail:
        stripped = sql.rstrip().rstrip(";")
        at = re.search(r"\sreturning\s", stripped, re.IGNORECASE)
        if at:
            sql = stripped[: at.start()] + tail + stripped[at.start() :]
        else:
            sql = stripped + tail
    return sql


def _replace_tail(tokens: list[tuple[str, str]], start: int) -> str:
    """``on conflict (key) do update set …`` for ``insert or replace into t (cols) …``."""
    k = _next_word(tokens, start)  # "into"
    k = _next_word(tokens, k + 1)
    table = tokens[k][1].strip('"[]').lower()
    key = REPLACE_KEYS.get(table)
    if key is None:
        raise ValueError(f"insert or replace into {table}: add its key to REPLACE_KEYS")
    k = _next_word(tokens, k + 1)
    close = _match_close(tokens, k)
    columns = [t.strip('"[]') for kind, t in tokens[k + 1 : close] if kind in ("word", "quoted")]
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return f" on conflict ({key}) do update set {sets}" if sets else " on conflict do nothing"


@functools.lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    """``sql`` as PostgreSQL and psycopg read it (see the module docstring)."""
    return _rewrite(_tokens(sql))
