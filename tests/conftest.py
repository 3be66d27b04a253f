"""Shared fixtures: one app factory, a fake Mistral server, a live uvicorn server.

``settings`` points the studio at a temporary data dir and an agent config
whose Mistral provider talks to ``fake_mistral`` on 127.0.0.1. Nothing here
reaches the internet.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar.testing import TestClient

from agents.config import AgentConfig, MistralConfig
from agents.providers.local import LocalModel
from app.auth.keys import ROLES, create_key
from app.core.settings import Settings
from app.main import create_app
from app.store import Store, statuses
from tests.fake_mistral import FakeMistral
from tests.receivers import wait_until

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# No OTLP/gRPC listener unless a test asks for one on a free port: apps in this
# process and `agentop serve` subprocesses would all fight for 4317.
os.environ.setdefault("AGENTOP_OTLP_GRPC_PORT", "0")

MISTRAL_MODEL = "mistral-small-latest"
_DATABASES = itertools.count(1)  # names of the tests' PostgreSQL databases
LOCAL_MODEL = "smollm2-135m"


def agent_config(mistral_url: str | None = None, **overrides: Any) -> AgentConfig:
    """An agent config for tests: the real local model, Mistral at ``mistral_url``."""
    mistral = MistralConfig(
        api_key="test-key" if mistral_url else "",
        server_url=mistral_url or "",
        models=(MISTRAL_MODEL, "mistral-large-latest"),
        retry_initial_ms=20,
        retry_max_elapsed_ms=3000,
        timeout_ms=10000,
    )
    values: dict[str, Any] = {
        "default_model": MISTRAL_MODEL if mistral_url else LOCAL_MODEL,
        "max_rounds": 4,
        "max_tokens": 64,
        "temperature": 0.0,
        "local_models": (LocalModel(name=LOCAL_MODEL, n_ctx=2048),),
        "mistral": mistral,
        "tools": {
            "wandb_log": {"project": "agentop-tests", "mode": "offline", "timeout": 60},
            "hf_list_models": {"endpoint": "http://127.0.0.1:9", "timeout": 3},
            "elevenlabs_speak": {"api_key": "", "timeout": 5},
        },
    }
    values.update(overrides)
    return AgentConfig(**values)


@pytest.fixture
def fake_mistral() -> Iterator[FakeMistral]:
    server = FakeMistral().start()
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_backends`` run twice: on SQLite and on a real PostgreSQL."""
    marked = metafunc.definition.get_closest_marker
    own = any(  # a test that names its backend itself
        "backend" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")
    )
    if (
        "backend" in metafunc.fixturenames
        and marked("both_backends")
        and not marked("sqlite_only")
        and not own
    ):
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store's database for this test: "sqlite" unless the test runs on both."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[tuple[str, str]]:
    """A real PostgreSQL server for the session, and a migrated template database.

    Each test on PostgreSQL gets a fresh copy of the template (``CREATE DATABASE …
    TEMPLATE``), which is much faster than migrating anew.
    """
    from tests.postgres_server import create_database, postgres_bin, start_postgres

    if postgres_bin() is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI needs PostgreSQL: apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    url, stop, root = start_postgres()
    template = create_database(url, "agentop_template")
    Store(root / "template-data" / "unused.db", url=template).close()
    try:
        yield url, "agentop_template"
    finally:
        stop()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    """None on SQLite; on PostgreSQL, a new migrated database for this test alone."""
    if backend != "postgresql":
        return None
    import psycopg

    url, template = request.getfixturevalue("postgres_template")
    name = f"t{next(_DATABASES)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create database {name} template {template}")  # type: ignore[arg-type]
    return f"{url.rsplit('/', 1)[0]}/{name}"


@pytest.fixture
def settings(data_dir: Path, fake_mistral: FakeMistral, database_url: str | None) -> Settings:
    return Settings(
        data_dir=data_dir, agent_config=agent_config(fake_mistral.url), database_url=database_url
    )


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    """One API key per role, created before the app starts: role -> key."""
    store = Store(settings.db_path, url=settings.database_url)
    made = {role: store.write_sync(create_key, f"{role}-key", role)[1] for role in ROLES}
    store.close()
    return made


@pytest.fixture
def db(data_dir: Path, database_url: str | None) -> Iterator[Store]:
    store = Store(data_dir / "test.db", url=database_url)
    yield store
    store.close()


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    return create_app(settings)


@pytest.fixture
def client(app, keys) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An API client sending the admin key."""
    with TestClient(app) as test_client:
        test_client.headers["X-API-Key"] = keys["admin"]
        yield test_client


@contextmanager
def api_client(settings: Settings, key: str) -> Iterator[TestClient]:
    """A fresh app on ``settings`` (a new process start) with a client sending ``key``."""
    with TestClient(create_app(settings)) as test_client:
        test_client.headers["X-API-Key"] = key
        yield test_client


def login(client: Any, key: str) -> None:
    """Log a test client in through the login form, as a browser would."""
    client.get("/login")
    r = client.post(
        "/login",
        data={"key": key, "next": "/", "_csrf_token": client.cookies.get("csrftoken", "")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf(client: Any) -> str:
    return client.cookies.get("csrftoken", "")


@pytest.fixture
def page_client(app, keys) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A browser-like client: logged in as admin with a session cookie and CSRF cookie."""
    with TestClient(app) as test_client:
        login(test_client, keys["admin"])
        yield test_client


def wait_for_run(client: Any, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the API until the run ends (tests may poll; the product streams)."""

    def ended() -> dict[str, Any] | None:
        detail: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        return detail if detail["run"]["status"] in statuses.TERMINAL else None

    return wait_until(ended, timeout, f"run {run_id} to finish")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real app under uvicorn in a background thread, on a loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Pages with open live lists keep streams open: do not wait long for them.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "the live server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_server(app, keys) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(app) as server:
        server.admin_key = keys["admin"]
        yield server


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    """Headless Chromium (Debian's, else Playwright's); skipped only outside CI if absent."""
    from playwright.sync_api import sync_playwright

    from tests.browser import launch

    with sync_playwright() as p:
        try:
            b = launch(p)
        except Exception as exc:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"no Chromium available: {exc}")
        yield b
        b.close()
