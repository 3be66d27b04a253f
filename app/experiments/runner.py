"""Experiments: run every item of a dataset on one configuration and score it.

An experiment is a background task. Each dataset item becomes a normal run
(source ``experiment``, recorded and viewable like any other) started through
the Runner; at most ``concurrency`` items run at once. When an item's run
ends it is scored with the chosen evaluators and the experiment's running
totals move on. Progress goes to live viewers through the studio's broker
(keyed ``experiment:<id>``), so a viewer on another replica sees it too;
viewers re-read the rows, so a missed message costs nothing. Queries live in
``app.experiments.queries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from app.core.background import TaskSet
from app.core.errors import InputError
from app.evals.apply import evaluate_run, parse_evaluators
from app.experiments.bodies import ExperimentConfig, ExperimentCreate
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
from app.runs.input import parse_run_input
from app.runs.runner import Runner
from app.store import Store
from app.store.live import RESYNC, Broker, LiveEvent
from app.store.runs import get_run

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 2


def parse_config(config: ExperimentConfig | None, runner: Runner) -> dict[str, Any]:
    """Check a run configuration the way a run's input is checked (ranges, known tools,
    a model someone serves); return it normalised."""
    given = msgspec.structs.asdict(config or ExperimentConfig())
    request = parse_run_input({**given, "prompt": "-"}, runner.config, runner.tool_names).request
    runner.provider_for(request.model)  # an unknown model fails now, not on every item
    return {
        "model": request.model,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "system_prompt": request.system_prompt,
        "tools": list(request.tools) if request.tools is not None else None,
        "max_rounds": request.max_rounds,
    }


class Experiments:
    """Starts experiments, runs their items with bounded concurrency, reports progress."""

    def __init__(self, store: Store, runner: Runner, broker: Broker | None = None) -> None:
        self.store = store
        self.runner = runner
        self.broker = broker or Broker()
        self.tasks: TaskSet[int] = TaskSet()
        self._seq: dict[int, int] = {}

    async def start(self, body: ExperimentCreate, created_by: str | None = None) -> dict[str, Any]:
        """Check what needs the store and the runner, create the experiment and its items,
        and start it in the background."""
        dataset = await self.store.read(get_dataset, body.dataset_id)
        if dataset is None:
            raise InputError(f"dataset {body.dataset_id} not found")
        row = {
            "name": (body.name or "").strip() or None,
            "dataset_id": body.dataset_id,
            "config": parse_config(body.config, self.runner),
            "evaluators": parse_evaluators(body.evaluators, self.runner),
            "concurrency": body.concurrency or DEFAULT_CONCURRENCY,
            "created_by": created_by,
        }
        experiment = await self.store.write(create_experiment, row, self.runner.owner)
        self.tasks.spawn(experiment["id"], self._execute(experiment["id"]))
        return experiment

    def _publish(self, experiment_id: int, payload: dict[str, Any]) -> None:
        seq = self._seq.get(experiment_id, 0) + 1
        self._seq[experiment_id] = seq
        self.broker.publish(
            LiveEvent(f"experiment:{experiment_id}", seq, "experiment_progress", payload, None)
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
        with self.broker.subscribe(f"experiment:{experiment_id}") as sub:
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
                if event.type == RESYNC:
                    continue  # only a nudge: the whole state was asked for just above
                yield event.payload
                if event.payload.get("final"):
                    return

    async def wait(self, experiment_id: int, timeout: float | None = None) -> None:
        await self.tasks.wait(experiment_id, timeout)

    async def shutdown(self) -> None:
        await self.tasks.cancel_all()
