"""Every setting of the studio, typed, with its environment variable and default.

- :class:`Settings`: where data goes and how the web process behaves; it holds
  the integrations' settings (:mod:`app.core.integration_settings`) and loads
  the agent config (``agents/config.yaml``: models, tools, keys), whose
  ``${VAR}`` references are filled from the environment these settings were
  read from.
- :class:`PathSettings`: where templates and static files are (read once, at import,
  by :mod:`app.core.paths`).
- :class:`ClientSettings`: what ``agentop run`` / ``replay`` send to a server.

How a variable is read, and how a bad value is reported, is in
:mod:`app.core.settings_base`. README's Configuration table documents each
variable (``tests/test_docs.py`` checks it from these models).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, field_validator
from pydantic_settings import NoDecode

from agents.config import AgentConfig, load_config
from app.core.integration_settings import IntegrationSettings
from app.core.settings_base import EnvSettings, SettingsError

__all__ = ["ClientSettings", "PathSettings", "Settings", "SettingsError", "parse_trusted_proxies"]


def parse_trusted_proxies(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``"10.0.0.1, 10.1.0.0/16"`` → the entries, each checked to be an IP or a network.

    uvicorn quietly treats anything else as a literal host name that never
    matches; a typo here would silently trust nobody (or, worse, be read as
    trusting someone), so it is refused with the entry named (app/auth/proxies.py
    applies the result).
    """
    parts = value.split(",") if isinstance(value, str) else list(value or ())
    entries = []
    for entry in (part.strip() for part in parts):
        if not entry:
            continue
        try:
            # Written the way uvicorn parses them: a network with host bits set
            # (10.0.0.1/24) would be a never-matching literal there.
            if "/" in entry:
                entries.append(str(ipaddress.ip_network(entry, strict=False)))
            else:
                entries.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"
            ) from None
    return tuple(entries)


class Settings(EnvSettings):
    data_dir: Path = Field(default=Path("data"), validation_alias="AGENTOP_DATA_DIR")
    # postgresql://user:password@host:5432/db: the store in PostgreSQL (unset = SQLite in data_dir)
    database_url: str | None = Field(default=None, validation_alias="AGENTOP_DATABASE_URL")
    # Another agent config file than agents/config.yaml
    agent_config_path: Path | None = Field(default=None, validation_alias="AGENTOP_CONFIG")
    max_body_bytes: int = Field(default=1_000_000, ge=1, validation_alias="AGENTOP_MAX_BODY_BYTES")
    max_concurrent_runs: int = Field(
        default=8, ge=1, validation_alias="AGENTOP_MAX_CONCURRENT_RUNS"
    )
    # Runs waiting for a slot; past it POST /api/runs answers 429
    max_queued_runs: int = Field(default=64, ge=0, validation_alias="AGENTOP_MAX_QUEUED_RUNS")
    # Threads for blocking tool calls (agents.tools.ToolPool)
    tool_threads: int = Field(default=8, ge=1, validation_alias="AGENTOP_TOOL_THREADS")
    # A run with no event for this long is failed (0 = never)
    run_stall_timeout_s: float = Field(
        default=900.0, ge=0, validation_alias="AGENTOP_RUN_STALL_TIMEOUT_S"
    )
    login_attempts_per_minute: int = Field(
        default=10, ge=1, validation_alias="AGENTOP_LOGIN_ATTEMPTS_PER_MINUTE"
    )
    # Peers whose X-Forwarded-For is believed (IPs/CIDRs, comma-separated); none by default.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="AGENTOP_TRUSTED_PROXIES"
    )
    # Delete runs that ended more than this many days ago (unset = keep everything)
    retention_days: float | None = Field(
        default=None, gt=0, validation_alias="AGENTOP_RETENTION_DAYS"
    )
    # A replica whose heartbeat is older than this is gone: another one ends its runs
    replica_lease_s: float = Field(default=30.0, ge=1, validation_alias="AGENTOP_REPLICA_LEASE_S")
    # On stop, runs in flight may finish for this long before they are interrupted (0: at
    # once, as Ctrl-C expects; a replica in a rolling update sets it below its grace period)
    drain_s: float = Field(default=0.0, ge=0, le=86400, validation_alias="AGENTOP_DRAIN_S")
    # OTLP/gRPC ingest, on the host the web server binds (0 = off; needs the otel-grpc extra)
    otlp_grpc_port: int = Field(
        default=4317, ge=0, le=65535, validation_alias="AGENTOP_OTLP_GRPC_PORT"
    )

    # Set by code, not read from the environment:
    agent_config: AgentConfig | None = None  # loaded from agent_config_path when None
    auth: bool = True  # False only with `serve --no-auth` on a loopback address
    # Where `agentop serve` answers; registered so `agentop run` beside it goes through it.
    server_url: str | None = None
    # The address `agentop serve --host` binds; the OTLP/gRPC server listens there too.
    host: str = "127.0.0.1"
    # Webhooks, SMTP, Hugging Face, W&B, prices, retries
    integrations: IntegrationSettings = Field(default_factory=IntegrationSettings)

    # The environment these settings were read from: the agent config's ${VAR}s come from it.
    _environ: dict[str, str] = PrivateAttr(default_factory=lambda: dict(os.environ))

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.split("://", 1)[0] not in ("postgresql", "postgres"):
            raise ValueError(
                "AGENTOP_DATABASE_URL must be a PostgreSQL URL (postgresql://user@host:5432/db);"
                " leave it unset for SQLite in the data dir"
            )
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _check_proxies(cls, value: Any) -> tuple[str, ...]:
        return parse_trusted_proxies(value)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agentop.db"

    @property
    def secret_path(self) -> Path:
        """Where :meth:`secret` keeps the SQLite studio's secret."""
        return self.data_dir / "secret.key"

    def secret(self) -> str:
        """A per-install secret (CSRF tokens) in the data dir, created on first use.

        On PostgreSQL the studio keeps it in the database instead, shared by its
        replicas (``app.auth.secret``).
        """
        path = self.secret_path
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def agents(self) -> AgentConfig:
        """The agent config (loaded once); raises ``agents.config.ConfigError`` if unusable."""
        if self.agent_config is None:
            self.agent_config = load_config(self.agent_config_path, self._environ)
        return self.agent_config


class PathSettings(EnvSettings):
    # Templates and static files live beside the packages in a checkout; an
    # installed copy (the container image) points AGENTOP_HOME at them.
    home: Path | None = Field(default=None, validation_alias="AGENTOP_HOME")


class ClientSettings(EnvSettings):
    # The key `agentop run` / `replay` send to a server up on the same data;
    # unset: a one-off member key (app/runs/remote.py).
    api_key: str = Field(default="", repr=False, validation_alias="AGENTOP_API_KEY")
