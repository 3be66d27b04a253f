"""Dependency providers: the store, broker, runner and Jinja env live on app state."""

from __future__ import annotations

from jinja2 import Environment
from litestar.datastructures import State

from app.live import Broker
from app.runs import Runner
from app.settings import Settings
from app.store import Store


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


DEPENDENCIES = {
    "store": provide_store,
    "broker": provide_broker,
    "runner": provide_runner,
    "settings": provide_settings,
    "jinja": provide_jinja,
}
