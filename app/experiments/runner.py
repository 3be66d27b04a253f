"""Experiments: run every item of a dataset on one configuration and score it.

An experiment is a background task. Each dataset item becomes a normal run
(source ``experiment``, recorded and viewable like any other) started through
the Runner; at most ``concurrency`` items run at once. When an item's run
ends it is scored with the chosen evaluators and the experiment's running
totals move on. Progress goes to live viewers through the experiment's own
broker (keyed by experiment id); viewers re-read the rows, so a missed
message costs nothing. Queries live in ``app.experiments.queries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from app.core.background import TaskSet
from app.evals.apply import evaluate_run, parse_evaluators
from app.experiments.datasets import get_dataset
from app.experiments.queries import (
    FINISHED,
    create_experiment,
    finish_experiment,
    finish_item,
    get_experiment,
    pending_items,
    start_item,
)
from app.runs.runner import InputError, Runner, parse_run_input
from app.store import Store
from app.store.live import Broker, LiveEvent
from app.store.runs import get_run

log = logging.getLogger(__name__)

CONFIG_KEYS = ("model", "temperature", "max_tokens", "system_prompt", "tools", "max_rounds")
MAX_CONCURRENCY = 8


def parse_config(raw: Any, runner: Runner) -> dict[str, Any]:
    """Validate a run configuration the way a run's input is validated; return it normalised."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError("config must be an object")
    unknown = sorted(set(raw) - set(CONFIG_KEYS))
    if unknown:
        raise InputError(f"unknown config key(s): {', '.join(unknown)}")
    request = parse_run_input({**raw, "prompt": "-"}, runner.config, runner.tool_names).request
    runner.provider_for(request.model)  # an unknown model fails now, not on every item
    return {
        "model": request.model,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "system_prompt": request.system_prompt,
        "tools": list(request.tools) if request.tools is not None else None,
        "max_rounds": request.max_rounds,
    }


def parse_concurrency(value: Any) -> int:
    if value is None or value == "":
        return 2
    if isinstance(value, bool):
        raise InputError("concurrency must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"concurrency must be a whole number, got {value!r}") from None
    if not 1 <= number <= MAX_CONCURRENCY:
        raise InputError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
    return number


class Experiments:
    """Starts experiments, runs their items with bounded concurrency, reports progress."""

    def __init__(self, store: Store, runner: Runner) -> None:
        self.store = store
        self.runner = runner
        self.broker = Broker()
        self.tasks: TaskSet[int] = TaskSet()
        self._seq: dict[int, int] = {}

    async def start(
        self,
        dataset_id: Any,
        config: Any,
        evaluators: Any,
        name: Any = None,
        concurrency: Any = None,
        created_by: str | None = None,
    ) -> dict[str, Any]:
        """Validate everything, create the experiment and its items, start it in the background."""
        if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, str)):
            raise InputError("dataset_id is required")
        try:
            dataset_id = int(dataset_id)
        except ValueError:
            raise InputError(f"dataset_id must be a number, got {dataset_id!r}") from None
        if not 0 < dataset_id < 2**63:
            raise InputError(f"dataset {dataset_id} not found")
        dataset = await self.store.read(get_dataset, dataset_id)
        if dataset is None:
            raise InputError(f"dataset {dataset_id} not found")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise InputError("name must be a string of at most 200 characters")
        row = {
            "name": (name or "").strip() or None,
            "dataset_id": dataset_id,
            "config": parse_config(config, self.runner),
            "evaluators": parse_evaluators(evaluators, self.runner),
            "concurrency": parse_concurrency(concurrency),
            "created_by": created_by,
        }
        experiment = await self.store.write(create_experiment, row)
        self.tasks.spawn(experiment["id"], self._execute(experiment["id"]))
        return experiment

    def _publish(self, experiment_id: int, payload: dict[str, Any]) -> None:
        seq = self._seq.get(experiment_id, 0) + 1
        self._seq[experiment_id] = seq
        self.broker.publish(
            LiveEvent(str(experiment_id), seq, "experiment_progress", payload, None)
        )

    async def _execute(self, experiment_id: int) -> None:
        experiment = await self.store.read(get_experiment, experiment_id)
        assert experiment is not None  # created just before this task; never deleted
        slots = asyncio.Semaphore(experiment["concurrency"])

        async def one(item: dict[str, Any]) -> None:
            async with slots:
                await self._run_item(experiment, item)

        status, error = "succeeded", None
        try:
            items = await self.store.read(pending_items, experiment_id)
            await self.store.write(finish_experiment, experiment_id, "running")
            self._publish(experiment_id, {"item_id": None})
            await asyncio.gather(*(one(item) for item in items))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.store.write(
                        finish_experiment,
                        experiment_id,
                        "interrupted",
                        "interrupted: the server stopped during the experiment",
                    )
                )
            self._publish(experiment_id, {"item_id": None, "final": True})
            raise
        except Exception as exc:  # the experiment fails, the server goes on
            log.exception("experiment %s failed", experiment_id)
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        await self.store.write(finish_experiment, experiment_id, status, error)
        self._publish(experiment_id, {"item_id": None, "final": True})
        self._seq.pop(experiment_id, None)

    async def _run_item(self, experiment: dict[str, Any], item: dict[str, Any]) -> None:
        experiment_id = experiment["id"]
        run_id = None
        try:
            # The experiment's runs form a session named after it, so its
            # totals and failure rate show on /sessions too.
            session = f"experiment: {experiment['name'] or experiment_id}"[:200]
            run_input = parse_run_input(
                {**experiment["config"], "prompt": item["input"], "session": session},
                self.runner.config,
                self.runner.tool_names,
            )
            run = await self.runner.start(run_input, source="experiment")
            run_id = run["id"]
            await self.store.write(start_item, item["id"], run_id)
            self._publish(experiment_id, {"item_id": item["id"]})
            await self.runner.wait(run_id)
            evaluations = await evaluate_run(
                self.store,
                self.runner,
                run_id,
                experiment["evaluators"],
                expected=item.get("expected"),
                created_by=experiment.get("created_by"),
                experiment_id=experiment_id,
            )
            ended = await self.store.read(get_run, run_id)
            verdicts = [e["passed"] for e in evaluations if e.get("passed") is not None]
            passed = all(verdicts) if verdicts else None
            await self.store.write(finish_item, experiment_id, item["id"], ended, passed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad item does not stop the others
            log.warning("experiment %s item %s failed: %s", experiment_id, item["idx"], exc)
            error = f"{type(exc).__name__}: {exc}"[:1000]
            await self.store.write(finish_item, experiment_id, item["id"], None, None, error)
        self._publish(experiment_id, {"item_id": item["id"]})

    async def follow(
        self, experiment_id: int, keepalive_s: float = 15.0
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Progress messages of one experiment until it ends; None means "send a keep-alive".

        The first message (``item_id`` None) asks for the whole state; the last
        has ``final``. Subscribes before reading so nothing falls in between.
        """
        with self.broker.subscribe(str(experiment_id)) as sub:
            experiment = await self.store.read(get_experiment, experiment_id)
            ended = experiment is None or experiment["status"] in FINISHED
            yield {"item_id": None, "final": ended}
            if ended:
                return
            while True:
                event = await sub.next(keepalive_s)
                if event is None:
                    yield None
                    continue
                if sub.overflowed:
                    sub.overflowed = False
                    yield {"item_id": None}
                yield event.payload
                if event.payload.get("final"):
                    return

    async def wait(self, experiment_id: int, timeout: float | None = None) -> None:
        await self.tasks.wait(experiment_id, timeout)

    async def shutdown(self) -> None:
        await self.tasks.cancel_all()
