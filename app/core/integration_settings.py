"""Settings of the outbound integrations: retries, Hugging Face, W&B, SMTP, prices, fine-tuning.

Read from the environment by :meth:`IntegrationSettings.from_env`; tests build
one directly (local fake endpoints, fast retries). The Mistral key and server
URL are not here: fine-tuning reuses the agent config's Mistral settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

# The modes ``wandb.init`` is typed to accept.
WandbMode = Literal["online", "offline", "disabled", "shared"]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class IntegrationSettings:
    # Exponential backoff for every outbound call (webhooks, SMTP, HF, W&B, Mistral files/jobs).
    retry_attempts: int = 4
    retry_initial_s: float = 0.5
    retry_max_s: float = 8.0
    http_timeout_s: float = 15.0
    # Hugging Face dataset export
    hf_endpoint: str = ""  # empty: huggingface_hub's default (or HF_ENDPOINT)
    hf_token: str = ""
    hf_repo: str = ""  # namespace/name of the dataset repo to push to
    hf_private: bool = True
    # Weights & Biases
    wandb_project: str = "agentop"
    wandb_entity: str = ""
    wandb_mode: str = ""  # empty: online with an API key, else offline
    wandb_run_metrics: bool = False  # log metrics of every finished agent run
    # SMTP for alert e-mail
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "agentop@localhost"
    smtp_starttls: bool = False
    # Prices: a YAML file of dated overrides, and the ElevenLabs credit price
    prices_file: Path | None = None
    elevenlabs_usd_per_credit: float | None = None
    # Fine-tuning: how often a running job is polled
    finetune_poll_s: float = 20.0

    @classmethod
    def from_env(cls) -> IntegrationSettings:
        env = os.environ
        credit = env.get("ELEVENLABS_USD_PER_CREDIT")
        return cls(
            retry_attempts=int(env.get("AGENTOP_RETRY_ATTEMPTS") or 4),
            retry_initial_s=float(env.get("AGENTOP_RETRY_INITIAL_S") or 0.5),
            retry_max_s=float(env.get("AGENTOP_RETRY_MAX_S") or 8.0),
            http_timeout_s=float(env.get("AGENTOP_HTTP_TIMEOUT_S") or 15.0),
            hf_endpoint=env.get("HF_ENDPOINT") or "",
            hf_token=env.get("HF_TOKEN") or "",
            hf_repo=env.get("AGENTOP_HF_REPO") or "",
            hf_private=not _flag(env.get("AGENTOP_HF_PUBLIC")),
            wandb_project=env.get("WANDB_PROJECT") or "agentop",
            wandb_entity=env.get("WANDB_ENTITY") or "",
            wandb_mode=env.get("WANDB_MODE") or "",
            wandb_run_metrics=bool(env.get("WANDB_API_KEY"))
            or _flag(env.get("AGENTOP_WANDB_RUN_METRICS")),
            smtp_host=env.get("AGENTOP_SMTP_HOST") or "",
            smtp_port=int(env.get("AGENTOP_SMTP_PORT") or 25),
            smtp_user=env.get("AGENTOP_SMTP_USER") or "",
            smtp_password=env.get("AGENTOP_SMTP_PASSWORD") or "",
            smtp_from=env.get("AGENTOP_SMTP_FROM") or "agentop@localhost",
            smtp_starttls=_flag(env.get("AGENTOP_SMTP_STARTTLS")),
            prices_file=Path(env["AGENTOP_PRICES_FILE"])
            if env.get("AGENTOP_PRICES_FILE")
            else None,
            elevenlabs_usd_per_credit=float(credit) if credit else None,
            finetune_poll_s=float(env.get("AGENTOP_FINETUNE_POLL_S") or 20.0),
        )

    @property
    def resolved_wandb_mode(self) -> WandbMode:
        if self.wandb_mode:
            # WANDB_MODE goes to wandb unchecked, as before: wandb.init validates it
            # (and still accepts legacy values such as "dryrun" that its type omits).
            return cast(WandbMode, self.wandb_mode)
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
