"""The run statuses, defined once, and what each of them counts as.

A run is ``queued`` until its agent starts, ``running`` while it works, and
ends ``succeeded``, ``failed`` or ``interrupted`` (the server stopped during
the run, or a crash left it unfinished and the next start swept it).

Decision: an interrupted run counts as a failure everywhere. The user asked
for an answer and did not get one, whatever the reason; a page that showed a
0 % failure rate for a session whose runs were mostly interrupted lied. So
every count of failures (the dashboard's FAILED KPI and chart, the
``status=failed`` filter of ``/runs``, session failure rates, the evals
success rate, the "failed runs" selection of exports) uses ``FAILED_LIKE``;
the plain ``failed`` status stays visible on each run, and the runs filter
offers ``interrupted`` alone for those who want to tell the two apart.

SQL takes these through ``sql_list`` so no query spells the set out again.
"""

from __future__ import annotations

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"

ACTIVE: tuple[str, ...] = (QUEUED, RUNNING)
"""A run in one of these may still change."""

TERMINAL: tuple[str, ...] = (SUCCEEDED, FAILED, INTERRUPTED)
"""A run in one of these has ended for good."""

FAILED_LIKE: tuple[str, ...] = (FAILED, INTERRUPTED)
"""The ended runs that count as failures, on every page, chart and export."""

ALL: tuple[str, ...] = ACTIVE + TERMINAL

# Every ended run is either a success or a failure: success rates and failure
# rates are complements on every page.
assert set(TERMINAL) == {SUCCEEDED, *FAILED_LIKE}


def sql_list(statuses: tuple[str, ...]) -> str:
    """The statuses as an SQL literal list, e.g. ``('failed', 'interrupted')``.

    Only for the constants above (never user input), where a bound parameter
    cannot go: trigger bodies and SQL built once at import.
    """
    assert all(s in ALL for s in statuses), statuses
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"


def is_failure(status: str | None) -> bool:
    """Whether a run in this status counts as a failure."""
    return status in FAILED_LIKE
