"""Settings of the studio process, read from the environment.

Agent settings (models, tools, keys) live in ``agents/config.yaml``; this file
covers where data goes and how the web process behaves.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from agents.config import AgentConfig, load_config
from app.auth.proxies import parse_trusted_proxies
from app.core.integration_settings import IntegrationSettings


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("data"))
    agent_config_path: Path | None = None
    max_body_bytes: int = 1_000_000
    max_concurrent_runs: int = 8
    max_queued_runs: int = 64  # runs waiting for a slot; past it POST /api/runs answers 429
    tool_threads: int = 8  # threads for blocking tool calls (agents.tools.ToolPool)
    run_stall_timeout_s: float = 900.0  # a run with no event for this long is failed (0 = never)
    agent_config: AgentConfig | None = None  # loaded from agent_config_path when None
    auth: bool = True  # False only with `serve --no-auth` on a loopback address
    # Where `agentop serve` answers; registered so `agentop run` beside it goes through it.
    server_url: str | None = None
    login_attempts_per_minute: int = 10
    # Peers whose X-Forwarded-For is believed (IPs/CIDRs); none by default (app/auth/proxies.py).
    trusted_proxies: tuple[str, ...] = ()
    # Webhooks, SMTP, Hugging Face, W&B, prices, retries (app/core/integration_settings.py)
    integrations: IntegrationSettings = field(default_factory=IntegrationSettings.from_env)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "data_dir": Path(env.get("AGENTOP_DATA_DIR") or "data"),
            "agent_config_path": Path(env["AGENTOP_CONFIG"]) if env.get("AGENTOP_CONFIG") else None,
            "max_body_bytes": int(env.get("AGENTOP_MAX_BODY_BYTES") or 1_000_000),
            "max_concurrent_runs": int(env.get("AGENTOP_MAX_CONCURRENT_RUNS") or 8),
            "max_queued_runs": int(env.get("AGENTOP_MAX_QUEUED_RUNS") or 64),
            "run_stall_timeout_s": float(env.get("AGENTOP_RUN_STALL_TIMEOUT_S") or 900),
            "tool_threads": int(env.get("AGENTOP_TOOL_THREADS") or 8),
            "login_attempts_per_minute": int(env.get("AGENTOP_LOGIN_ATTEMPTS_PER_MINUTE") or 10),
            "trusted_proxies": parse_trusted_proxies(env.get("AGENTOP_TRUSTED_PROXIES")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agentop.db"

    def secret(self) -> str:
        """A per-install secret (CSRF tokens), created on first use in the data dir."""
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def agents(self) -> AgentConfig:
        if self.agent_config is None:
            self.agent_config = load_config(self.agent_config_path)
        return self.agent_config
