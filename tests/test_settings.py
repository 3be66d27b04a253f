"""One typed configuration: every variable is read, defaults hold, a bad value is
one clear line (and `agentop serve` stops on it with status 2), and the agent
config's ${VAR}s come from the environment the settings were read from."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agents.config import DEFAULT_CONFIG, ConfigError, load_config
from app.auth.keys import count_active_keys
from app.core.integration_settings import IntegrationSettings
from app.core.settings import ClientSettings, PathSettings, Settings, SettingsError
from app.runs.remote import credential
from app.store import Store
from tests.conftest import free_port
from tests.test_docs import settings_models

DECLARED = {name for model in settings_models() for name in model.variables()}
# Variables the shipped agent config references (read through Settings.agents()).
AGENT_VARS = {
    "AGENTOP_DEFAULT_MODEL",
    "AGENTOP_MAX_ROUNDS",
    "AGENTOP_MAX_TOKENS",
    "AGENTOP_TEMPERATURE",
    "AGENTOP_N_CTX",
    "MISTRAL_API_KEY",
    "MISTRAL_TIMEOUT_MS",
    "AGENTOP_AGENT_MAX_DEPTH",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No setting from the shell running the tests (conftest's WANDB_MODE included)."""
    for name in DECLARED | AGENT_VARS:
        monkeypatch.delenv(name, raising=False)


def integrations() -> IntegrationSettings:
    return Settings.from_env().integrations


# (variable, value in the environment, what reads it, the typed value)
READS: list[tuple[str, str, Callable[[], Any], Any]] = [
    (
        "AGENTOP_DATA_DIR",
        "/srv/agentop",
        lambda: Settings.from_env().data_dir,
        Path("/srv/agentop"),
    ),
    (
        "AGENTOP_CONFIG",
        "/etc/a.yaml",
        lambda: Settings.from_env().agent_config_path,
        Path("/etc/a.yaml"),
    ),
    ("AGENTOP_MAX_BODY_BYTES", "2048", lambda: Settings.from_env().max_body_bytes, 2048),
    ("AGENTOP_MAX_CONCURRENT_RUNS", "3", lambda: Settings.from_env().max_concurrent_runs, 3),
    ("AGENTOP_MAX_QUEUED_RUNS", "0", lambda: Settings.from_env().max_queued_runs, 0),
    ("AGENTOP_TOOL_THREADS", "2", lambda: Settings.from_env().tool_threads, 2),
    ("AGENTOP_RUN_STALL_TIMEOUT_S", "0", lambda: Settings.from_env().run_stall_timeout_s, 0.0),
    (
        "AGENTOP_LOGIN_ATTEMPTS_PER_MINUTE",
        "5",
        lambda: Settings.from_env().login_attempts_per_minute,
        5,
    ),
    (
        "AGENTOP_TRUSTED_PROXIES",
        " 10.0.0.7/24, ::1 ",
        lambda: Settings.from_env().trusted_proxies,
        ("10.0.0.0/24", "::1"),
    ),
    ("AGENTOP_OTLP_GRPC_PORT", "0", lambda: Settings.from_env().otlp_grpc_port, 0),
    ("AGENTOP_RETENTION_DAYS", "30", lambda: Settings.from_env().retention_days, 30.0),
    (
        "AGENTOP_DATABASE_URL",
        "postgresql://u@db:5432/studio",
        lambda: Settings.from_env().database_url,
        "postgresql://u@db:5432/studio",
    ),
    ("AGENTOP_REPLICA_LEASE_S", "12", lambda: Settings.from_env().replica_lease_s, 12.0),
    ("AGENTOP_DRAIN_S", "240", lambda: Settings.from_env().drain_s, 240.0),
    ("AGENTOP_RETRY_ATTEMPTS", "7", lambda: integrations().retry_attempts, 7),
    ("AGENTOP_RETRY_INITIAL_S", "0.25", lambda: integrations().retry_initial_s, 0.25),
    ("AGENTOP_RETRY_MAX_S", "3", lambda: integrations().retry_max_s, 3.0),
    ("AGENTOP_HTTP_TIMEOUT_S", "2.5", lambda: integrations().http_timeout_s, 2.5),
    (
        "HF_ENDPOINT",
        "http://127.0.0.1:9/hf",
        lambda: integrations().hf_endpoint,
        "http://127.0.0.1:9/hf",
    ),
    ("HF_TOKEN", "hf_abc", lambda: integrations().hf_token, "hf_abc"),
    ("AGENTOP_HF_REPO", "team/runs", lambda: integrations().hf_repo, "team/runs"),
    ("AGENTOP_HF_PUBLIC", "true", lambda: integrations().hf_private, False),
    (
        "AGENTOP_REPO_URL",
        "https://git.example/agentop",
        lambda: integrations().repo_url,
        "https://git.example/agentop",
    ),
    (
        "WANDB_API_KEY",
        "wk",
        lambda: (integrations().wandb_run_metrics, integrations().resolved_wandb_mode),
        (True, "online"),
    ),
    ("WANDB_PROJECT", "proj", lambda: integrations().wandb_project, "proj"),
    ("WANDB_ENTITY", "team", lambda: integrations().wandb_entity, "team"),
    ("WANDB_MODE", "disabled", lambda: integrations().resolved_wandb_mode, "disabled"),
    ("AGENTOP_WANDB_RUN_METRICS", "1", lambda: integrations().wandb_run_metrics, True),
    ("AGENTOP_SMTP_HOST", "mail.test", lambda: integrations().smtp_host, "mail.test"),
    ("AGENTOP_SMTP_PORT", "2525", lambda: integrations().smtp_port, 2525),
    ("AGENTOP_SMTP_USER", "u", lambda: integrations().smtp_user, "u"),
    ("AGENTOP_SMTP_PASSWORD", "pw", lambda: integrations().smtp_password, "pw"),
    ("AGENTOP_SMTP_FROM", "s@x.test", lambda: integrations().smtp_from, "s@x.test"),
    ("AGENTOP_SMTP_STARTTLS", "yes", lambda: integrations().smtp_starttls, True),
    ("AGENTOP_PRICES_FILE", "/p.yaml", lambda: integrations().prices_file, Path("/p.yaml")),
    (
        "ELEVENLABS_USD_PER_CREDIT",
        "0.0003",
        lambda: integrations().elevenlabs_usd_per_credit,
        0.0003,
    ),
    ("AGENTOP_FINETUNE_POLL_S", "5", lambda: integrations().finetune_poll_s, 5.0),
    ("AGENTOP_HOME", "/opt/agentop", lambda: PathSettings.from_env().home, Path("/opt/agentop")),
    ("AGENTOP_API_KEY", "ao_key", lambda: ClientSettings.from_env().api_key, "ao_key"),
]


def test_the_table_covers_every_declared_variable():
    assert {row[0] for row in READS} == DECLARED


@pytest.mark.parametrize(("variable", "text", "read", "expected"), READS, ids=[r[0] for r in READS])
def test_every_variable_is_read_and_typed(monkeypatch, variable, text, read, expected):
    monkeypatch.setenv(variable, text)
    assert read() == expected


def test_defaults():
    s = Settings.from_env()
    assert s.data_dir == Path("data") and s.db_path == Path("data/agentop.db")
    assert s.agent_config_path is None
    assert (s.max_body_bytes, s.max_concurrent_runs, s.max_queued_runs) == (1_000_000, 8, 64)
    assert (s.tool_threads, s.run_stall_timeout_s, s.login_attempts_per_minute) == (8, 900.0, 10)
    assert s.trusted_proxies == () and s.auth is True and s.server_url is None
    assert s.otlp_grpc_port == 4317 and s.host == "127.0.0.1"
    assert s.retention_days is None  # keep everything
    i = s.integrations
    assert (i.retry_attempts, i.retry_initial_s, i.retry_max_s, i.http_timeout_s) == (
        4,
        0.5,
        8.0,
        15.0,
    )
    assert i.hf_endpoint == i.hf_token == i.hf_repo == "" and i.hf_private is True
    assert i.wandb_project == "agentop" and i.wandb_run_metrics is False
    assert i.resolved_wandb_mode == "offline"
    assert (i.smtp_host, i.smtp_port, i.smtp_from, i.smtp_starttls) == (
        "",
        25,
        "agentop@localhost",
        False,
    )
    assert i.prices_file is None and i.elevenlabs_usd_per_credit is None
    assert i.finetune_poll_s == 20.0
    assert PathSettings.from_env().home is None and ClientSettings.from_env().api_key == ""


def test_an_empty_variable_is_unset_and_arguments_win(monkeypatch):
    monkeypatch.setenv("AGENTOP_MAX_CONCURRENT_RUNS", "")
    assert Settings.from_env().max_concurrent_runs == 8
    monkeypatch.setenv("AGENTOP_MAX_CONCURRENT_RUNS", "3")
    monkeypatch.setenv("AGENTOP_DATA_DIR", "/from/env")
    # `--data-dir` beats the variable; an option left out (None) leaves it its say.
    s = Settings.from_env(data_dir=Path("/from/flag"), agent_config_path=None)
    assert s.data_dir == Path("/from/flag") and s.max_concurrent_runs == 3
    assert Settings(max_concurrent_runs=5).max_concurrent_runs == 5


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        ("AGENTOP_MAX_CONCURRENT_RUNS", "abc", "Input should be a valid integer"),
        ("AGENTOP_MAX_CONCURRENT_RUNS", "-1", "greater than or equal to 1"),
        ("AGENTOP_MAX_QUEUED_RUNS", "-1", "greater than or equal to 0"),
        ("AGENTOP_RUN_STALL_TIMEOUT_S", "soon", "Input should be a valid number"),
        ("AGENTOP_TRUSTED_PROXIES", "10.0.0.5,proxy.local", "'proxy.local' is not an IP address"),
        ("AGENTOP_SMTP_PORT", "70000", "less than or equal to 65535"),
        ("AGENTOP_OTLP_GRPC_PORT", "70000", "less than or equal to 65535"),
        ("AGENTOP_OTLP_GRPC_PORT", "grpc", "Input should be a valid integer"),
        ("AGENTOP_RETENTION_DAYS", "0", "greater than 0"),
        ("AGENTOP_DATABASE_URL", "mysql://db/studio", "must be a PostgreSQL URL"),
        ("AGENTOP_REPLICA_LEASE_S", "0", "greater than or equal to 1"),
        ("AGENTOP_DRAIN_S", "-1", "greater than or equal to 0"),
        ("AGENTOP_RETENTION_DAYS", "forever", "Input should be a valid number"),
        ("AGENTOP_SMTP_PORT", "0", "greater than or equal to 1"),
        ("AGENTOP_SMTP_STARTTLS", "maybe", "Input should be a valid boolean"),
        ("AGENTOP_HTTP_TIMEOUT_S", "0", "greater than 0"),
        ("AGENTOP_RETRY_ATTEMPTS", "0", "greater than or equal to 1"),
        ("ELEVENLABS_USD_PER_CREDIT", "cheap", "Input should be a valid number"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, variable, text, expected):
    monkeypatch.setenv(variable, text)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {variable}={text!r}: ")
    assert expected in message and "\n" not in message


def test_several_bad_values_are_all_named(monkeypatch):
    monkeypatch.setenv("AGENTOP_TOOL_THREADS", "0")
    monkeypatch.setenv("AGENTOP_MAX_BODY_BYTES", "big")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert "AGENTOP_TOOL_THREADS='0'" in str(caught.value)
    assert "AGENTOP_MAX_BODY_BYTES='big'" in str(caught.value)


def test_a_bad_value_given_in_code_is_refused_too():
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Settings(max_concurrent_runs=0)


def test_the_cli_credential_is_agentop_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTOP_API_KEY", " ao_given\n")
    store = Store(tmp_path / "agentop.db")

    async def key() -> str:
        async with credential(store, "process-1") as given:
            return given

    try:
        assert asyncio.run(key()) == "ao_given"
        assert store.read_sync(count_active_keys) == 0  # no one-off key was made
    finally:
        store.close()


# --- agentop serve --------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        (
            "AGENTOP_MAX_CONCURRENT_RUNS",
            "abc",
            "error: invalid setting AGENTOP_MAX_CONCURRENT_RUNS='abc': Input should be a valid integer",
        ),
        (
            "AGENTOP_SMTP_PORT",
            "-1",
            "error: invalid setting AGENTOP_SMTP_PORT='-1': Input should be",
        ),
        (
            "AGENTOP_MAX_ROUNDS",
            "many",
            "max_rounds (from AGENTOP_MAX_ROUNDS) = 'many': Input should be",
        ),
    ],
)
def test_serve_with_a_bad_value_says_so_in_one_line_and_exits_2(tmp_path, variable, text, expected):
    env = {k: v for k, v in os.environ.items() if k not in DECLARED | AGENT_VARS}
    env[variable] = text
    port = str(free_port())
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", port, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert r.stdout == ""  # nothing served, no admin key made
    assert not (tmp_path / "agentop.db").exists()


# --- the agent config's ${VAR}s -------------------------------------------------


def test_agent_config_is_filled_from_the_environment_settings_read(monkeypatch):
    monkeypatch.setenv("AGENTOP_MAX_ROUNDS", "9")
    monkeypatch.setenv("AGENTOP_AGENT_MAX_DEPTH", "3")
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-test")
    settings = Settings.from_env()
    monkeypatch.setenv("AGENTOP_MAX_ROUNDS", "2")  # after the settings were read: not seen
    config = settings.agents()
    assert config.max_rounds == 9
    assert config.tools["ask_agent"]["max_depth"] == 3
    assert config.mistral.api_key == "sk-test"
    assert config.resolved_default_model == "mistral-small-latest"
    assert settings.agents() is config  # loaded once


def test_agentop_config_names_another_file_and_its_variables(tmp_path, monkeypatch):
    path = tmp_path / "agents.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            default_model: ${MY_MODEL}
            max_tokens: ${MY_TOKENS:-64}
            local:
              models:
                - name: tiny
                  gguf: $HOME/models/tiny.gguf
            tools:
              hf_list_models:
                endpoint: http://${HUB_HOST:-127.0.0.1}:${HUB_PORT:-9}/api
            """
        )
    )
    monkeypatch.setenv("AGENTOP_CONFIG", str(path))
    with pytest.raises(
        ConfigError, match="default_model: environment variable MY_MODEL is not set"
    ):
        Settings.from_env().agents()
    monkeypatch.setenv("MY_MODEL", "tiny")
    monkeypatch.setenv("HUB_PORT", "8080")
    config = Settings.from_env().agents()
    assert config.default_model == "tiny" and config.max_tokens == 64
    assert config.local_models[0].gguf == "$HOME/models/tiny.gguf"  # only ${...} is a reference
    assert config.tools["hf_list_models"]["endpoint"] == "http://127.0.0.1:8080/api"


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        (
            "AGENTOP_MAX_ROUNDS",
            "abc",
            "max_rounds (from AGENTOP_MAX_ROUNDS) = 'abc': Input should be a valid integer",
        ),
        (
            "AGENTOP_MAX_TOKENS",
            "0",
            "max_tokens (from AGENTOP_MAX_TOKENS) = 0: Input should be greater than or equal to 1",
        ),
        (
            "AGENTOP_TEMPERATURE",
            "hot",
            "temperature (from AGENTOP_TEMPERATURE) = 'hot': Input should be a valid number",
        ),
        ("AGENTOP_N_CTX", "lots", "local.models.0.n_ctx (from AGENTOP_N_CTX) = 'lots'"),
        ("MISTRAL_TIMEOUT_MS", "0", "mistral.timeout_ms (from MISTRAL_TIMEOUT_MS) = 0"),
        (
            "AGENTOP_AGENT_MAX_DEPTH",
            "-1",
            "tools.ask_agent.max_depth (from AGENTOP_AGENT_MAX_DEPTH) = -1",
        ),
    ],
)
def test_a_bad_number_in_the_agent_config_names_key_and_variable(variable, text, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(env={variable: text})
    message = str(caught.value)
    assert message.startswith(f"{DEFAULT_CONFIG}: ")
    assert expected in message and "\n" not in message


def test_a_value_written_in_the_file_is_checked_too(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text("max_rounds: -2\nmistral:\n  retry_initial_ms: soon\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "max_rounds = -2: Input should be greater than or equal to 1" in str(caught.value)
    assert "mistral.retry_initial_ms = 'soon'" in str(caught.value)
