"""Dependency providers (the store, broker, runner and Jinja env live on app state)
and the lookups handlers share."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from litestar.datastructures import State
from litestar.exceptions import NotFoundException

from app.core.settings import Settings
from app.runs.runner import Runner
from app.store import Store
from app.store.live import Broker
from app.store.runs import get_run


def provide_store(state: State) -> Store:
    return state.store


def provide_broker(state: State) -> Broker:
    return state.broker


def provide_runner(state: State) -> Runner:
    return state.runner


def provide_settings(state: State) -> Settings:
    return state.settings


def provide_jinja(state: State) -> Environment:
    return state.jinja


async def existing_run(store: Store, run_id: str) -> dict[str, Any]:
    """The run, or a 404 saying which run was not found."""
    run = await store.read(get_run, run_id)
    if run is None:
        raise NotFoundException(f"run {run_id!r} not found")
    return run


DEPENDENCIES = {
    "store": provide_store,
    "broker": provide_broker,
    "runner": provide_runner,
    "settings": provide_settings,
    "jinja": provide_jinja,
}
