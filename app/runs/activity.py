"""What a live run is doing right now: the activity line of its page.

Derived from the run's event log alone, so the live stream (event by event)
and a page opened mid-run (from the stored log) say the same thing:

- ``loading``: a model is loading (``model_loading`` until ``model_loaded``);
- ``waiting``: a model call was sent and nothing came back yet
  (``llm_call_started`` or ``model_loaded``, until the first piece);
- ``tool_args``: the model writes a tool call (``tool_call_delta`` pieces),
  with the arguments written so far;
- ``calling``: a tool runs (``tool_call_started`` until ``tool_call_finished``);
- ``writing``: the model writes its answer (``token`` pieces).

The first four are waits: their line shows the time elapsed since they began.
A finished model call or tool call, or the run's end, leaves no activity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from sqlite_utils import Database

from app.core.formats import format_elapsed, number
from app.store.event_log import read_events
from app.store.events import TERMINAL_EVENTS

WAITS = frozenset({"loading", "waiting", "tool_args", "calling"})
# Events that end whatever the run was doing.
_ENDS = TERMINAL_EVENTS | {"llm_call_finished", "tool_call_finished"}
# Events that begin or end an activity (tokens and argument pieces only carry one on).
ANCHORS = _ENDS | {"model_loading", "model_loaded", "llm_call_started", "tool_call_started"}


@dataclass(frozen=True)
class Activity:
    kind: str
    since: float  # Unix time the activity began
    name: str = ""  # the model (loading, waiting) or the tool (tool_args, calling)
    call: tuple[Any, Any] | None = None  # (round, index) of the tool call being written
    args: str = ""  # the arguments written so far (tool_args)

    @property
    def ticking(self) -> bool:
        """A wait: its elapsed time is worth updating every second."""
        return self.kind in WAITS

    @property
    def key(self) -> tuple[str, str, tuple[Any, Any] | None]:
        """What the line says, apart from the time: a new key is a new line to send."""
        return (self.kind, self.name, self.call)

    def view(self, now: float | None = None) -> dict[str, Any]:
        """Template context of ``partials/activity.html``."""
        seconds = max(0.0, (time.time() if now is None else now) - self.since)
        return {
            "kind": self.kind,
            "name": self.name,
            "args": self.args,
            "ticking": self.ticking,
            "elapsed": format_elapsed(seconds),
        }


def advance(current: Activity | None, kind: str, payload: dict[str, Any]) -> Activity | None:
    """The activity after one more event of type ``kind``."""
    at = number(payload.get("at"))
    since = float(at) if at is not None else time.time()
    if kind == "model_loading":
        return Activity("loading", since, str(payload.get("model") or ""))
    if kind in ("llm_call_started", "model_loaded"):
        return Activity("waiting", since, str(payload.get("model") or ""))
    if kind == "token":
        return (
            current
            if current is not None and current.kind == "writing"
            else (Activity("writing", since))
        )
    if kind == "tool_call_delta":
        call = (payload.get("round"), payload.get("index"))
        name, text = str(payload.get("name") or ""), str(payload.get("text") or "")
        if current is not None and current.kind == "tool_args" and current.call == call:
            return replace(current, name=name or current.name, args=current.args + text)
        return Activity("tool_args", since, name, call, text)
    if kind == "tool_call_started":
        return Activity("calling", since, str(payload.get("name") or ""))
    if kind in _ENDS:
        return None
    return current  # messages, memory snapshots…: the run goes on doing what it did


def current_activity(db: Database, run_id: str, upto: int | None = None) -> Activity | None:
    """The run's activity after its event number ``upto`` (default: its latest event)."""
    bound = upto if upto is not None else 2**62
    marks = ", ".join("?" * len(ANCHORS))
    # Back from ``upto`` to the event that began the current activity; pieces follow it.
    anchor = db.execute(
        f"select seq from events where run_id = ? and seq <= ? and type in ({marks})"
        " order by seq desc limit 1",
        [run_id, bound, *sorted(ANCHORS)],
    ).fetchone()
    if anchor is None:
        return None
    state: Activity | None = None
    # Pieces may be stored one row each or folded into one row (event_log gives them back).
    for event in read_events(db, run_id, anchor[0] - 1, bound):
        payload = event["payload"]
        state = advance(state, event["type"], payload if isinstance(payload, dict) else {})
    return state
