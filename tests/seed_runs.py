"""Recorded runs for export and fine-tune tests, written through the real event log."""

from __future__ import annotations

import time
from typing import Any

from agents.events import (
    LLMCallFinished,
    MessageAdded,
    RunFailed,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from app.store import Store
from app.store.events import record_event
from app.store.runs import create_run

MODEL = "mistral-small-latest"


def seed_run(
    store: Store,
    run_id: str,
    prompt: str,
    answer: str | None,
    tool: bool = False,
    error: str | None = None,
    started: float | None = None,
) -> None:
    """A run: user prompt, optionally one tool round, then an answer (or a failure)."""
    t = started or time.time() - 60
    store.write_sync(
        create_run,
        {
            "id": run_id,
            "model": MODEL,
            "provider": "mistral",
            "prompt": prompt,
            "started_at": t,
            "params": {},
        },
    )
    events: list[Any] = [
        RunStarted(model=MODEL, provider="mistral", params={"temperature": 0.2}, at=t),
        MessageAdded(role="system", content="You are helpful.", at=t),
        MessageAdded(role="user", content=prompt, at=t),
    ]
    if tool:
        call = {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "hf_list_models", "arguments": '{"search": "mistral"}'},
        }
        events += [
            LLMCallFinished(
                model=MODEL,
                provider="mistral",
                input_tokens=100,
                output_tokens=20,
                latency_ms=10,
                at=t + 1,
            ),
            MessageAdded(role="assistant", content="", tool_calls=(call,), at=t + 1),
            ToolCallStarted(
                call_id="call_abc", name="hf_list_models", arguments={"search": "mistral"}, at=t + 1
            ),
            ToolCallFinished(
                call_id="call_abc",
                name="hf_list_models",
                arguments={"search": "mistral"},
                result="mistralai/Mistral-7B",
                error=None,
                latency_ms=5,
                at=t + 2,
            ),
            MessageAdded(
                role="tool",
                content="mistralai/Mistral-7B",
                tool_call_id="call_abc",
                name="hf_list_models",
                at=t + 2,
            ),
        ]
    if answer is not None:
        events += [
            LLMCallFinished(
                model=MODEL,
                provider="mistral",
                input_tokens=200,
                output_tokens=30,
                latency_ms=10,
                at=t + 3,
            ),
            MessageAdded(role="assistant", content=answer, at=t + 3),
        ]
    events.append(
        RunFailed(error=error, at=t + 4) if error else RunFinished(response=answer or "", at=t + 4)
    )
    for seq, event in enumerate(events, 1):
        store.write_sync(record_event, run_id, seq, event.to_dict())


def evaluate(
    store: Store,
    run_id: str,
    metric: str,
    value: float | None = None,
    label: str | None = None,
    passed: int | None = None,
) -> None:
    store.write_sync(
        lambda db: db["evaluations"].insert(
            {
                "run_id": run_id,
                "metric": metric,
                "value": value,
                "label": label,
                "passed": passed,
                "source": "human",
                "created_at": time.time(),
            }
        )
    )


def seed_all(store: Store) -> None:
    """good (tool), bad-fixed (failed, corrected), bad-raw (failed), low (scored 0.2, corrected)."""
    seed_run(store, "good", "Find Mistral models", "Mistral-7B is one.", tool=True, started=1000)
    seed_run(store, "badfixed", "What is 2+2?", None, error="provider error", started=1001)
    seed_run(store, "badraw", "Capital of Peru?", None, error="timeout", started=1002)
    seed_run(store, "low", "Spell cat", "k-a-t", started=1003)
    evaluate(store, "badfixed", "correction", label="2 + 2 = 4.")
    evaluate(store, "low", "score", value=0.2)
    evaluate(store, "low", "correction", label="c-a-t")
    evaluate(store, "good", "thumbs", value=1.0, label="up", passed=1)
