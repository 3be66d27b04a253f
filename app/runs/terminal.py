"""How a run reads in a terminal: its events as they stream, then one summary line.

Shared by ``agentop run`` and ``agentop replay``, whether the run executes in
this process or on a server beside it. The answer and the tool calls go to
``out``; why the run waits (a model loading) goes to ``status`` (stderr by
default), so a piped answer stays clean. Pieces of tool-call arguments are
not printed: the whole call is, when it starts.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from app.core.formats import format_ms
from app.pricing.costs import format_cost, usage_reason


def print_event(
    event_type: str, payload: dict[str, Any], out: TextIO, status: TextIO | None = None
) -> None:
    status = status if status is not None else sys.stderr
    if event_type == "model_loading":
        status.write(f"… loading model {payload.get('model')}\n")
        status.flush()
    elif event_type == "model_loaded":
        status.write(
            f"… model {payload.get('model')} loaded in {format_ms(payload.get('latency_ms'))}\n"
        )
        status.flush()
    elif event_type == "token":
        out.write(payload["text"])
        out.flush()
    elif event_type == "tool_call_started":
        out.write(f"\n→ {payload['name']}({json.dumps(payload['arguments'])})\n")
    elif event_type == "tool_call_finished":
        if payload.get("error"):
            out.write(f"  ✗ {payload['name']} failed: {payload['error']}\n")
        else:
            out.write(f"  ✓ {payload['name']} ({payload['latency_ms']:.0f} ms)\n")
    elif event_type == "run_failed":
        out.write(f"\nrun failed: {payload['error']}\n")


def print_final(final: dict[str, Any], out: TextIO) -> None:
    """The last line of a run in the terminal: status, tokens, cost, latency, id."""
    tokens = f"{final['input_tokens']}/{final['output_tokens']}"
    if final.get("usage_unknown_calls"):
        # Some calls reported no usage: the counts are a floor, not the total.
        tokens = f"≥ {tokens}" if final["input_tokens"] or final["output_tokens"] else "unknown"
    cost = format_cost(final["cost_usd"], final["cost_status"], usage_reason(final))
    print(
        f"\n[{final['status']}] tokens {tokens} · cost {cost} · "
        f"{(final['latency_ms'] or 0):.0f} ms · run id {final['id']}",
        file=out,
    )
