"""Settings of the outbound integrations: retries, Hugging Face, W&B, SMTP, prices, fine-tuning.

Read from the environment like every setting (``app.core.settings_base``):
each field names its variable. Kept apart from :class:`app.core.settings.Settings`
(which holds one as ``settings.integrations``) so that the integrations take only
what they use; tests build one directly (local fake endpoints, fast retries).
The Mistral key and server URL are not here: fine-tuning reuses the agent
config's Mistral settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self, cast

from pydantic import Field, model_validator

from app.core.settings_base import EnvSettings

# The modes ``wandb.init`` is typed to accept.
WandbMode = Literal["online", "offline", "disabled", "shared"]


class IntegrationSettings(EnvSettings):
    # Exponential backoff for every outbound call (webhooks, SMTP, HF, W&B, Mistral files/jobs).
    retry_attempts: int = Field(default=4, ge=1, validation_alias="AGENTOP_RETRY_ATTEMPTS")
    retry_initial_s: float = Field(default=0.5, ge=0, validation_alias="AGENTOP_RETRY_INITIAL_S")
    retry_max_s: float = Field(default=8.0, ge=0, validation_alias="AGENTOP_RETRY_MAX_S")
    http_timeout_s: float = Field(default=15.0, gt=0, validation_alias="AGENTOP_HTTP_TIMEOUT_S")
    # Hugging Face dataset export; an empty endpoint is huggingface_hub's default.
    hf_endpoint: str = Field(default="", validation_alias="HF_ENDPOINT")
    hf_token: str = Field(default="", repr=False, validation_alias="HF_TOKEN")
    hf_repo: str = Field(
        default="", validation_alias="AGENTOP_HF_REPO"
    )  # namespace/name to push to
    hf_public: bool = Field(default=False, validation_alias="AGENTOP_HF_PUBLIC")
    # Where the dataset card points people for the studio's code; empty: no link.
    repo_url: str = Field(default="", validation_alias="AGENTOP_REPO_URL")
    # Weights & Biases. wandb reads its key itself; here it decides the mode and the metrics.
    wandb_api_key: str = Field(default="", repr=False, validation_alias="WANDB_API_KEY")
    wandb_project: str = Field(default="agentop", validation_alias="WANDB_PROJECT")
    wandb_entity: str = Field(default="", validation_alias="WANDB_ENTITY")
    # Given to wandb unchecked, as before: wandb.init validates it (and still
    # accepts legacy values such as "dryrun" that its type omits). Empty:
    # online with an API key, else offline.
    wandb_mode: str = Field(default="", validation_alias="WANDB_MODE")
    # Log metrics of every finished agent run (always, with an API key).
    wandb_run_metrics: bool = Field(default=False, validation_alias="AGENTOP_WANDB_RUN_METRICS")
    # SMTP for alert e-mail
    smtp_host: str = Field(default="", validation_alias="AGENTOP_SMTP_HOST")
    smtp_port: int = Field(default=25, ge=1, le=65535, validation_alias="AGENTOP_SMTP_PORT")
    smtp_user: str = Field(default="", validation_alias="AGENTOP_SMTP_USER")
    smtp_password: str = Field(default="", repr=False, validation_alias="AGENTOP_SMTP_PASSWORD")
    smtp_from: str = Field(default="agentop@localhost", validation_alias="AGENTOP_SMTP_FROM")
    smtp_starttls: bool = Field(default=False, validation_alias="AGENTOP_SMTP_STARTTLS")
    # Prices: a YAML file of dated overrides, and the ElevenLabs credit price
    prices_file: Path | None = Field(default=None, validation_alias="AGENTOP_PRICES_FILE")
    elevenlabs_usd_per_credit: float | None = Field(
        default=None, ge=0, validation_alias="ELEVENLABS_USD_PER_CREDIT"
    )
    # Fine-tuning: how often a running job is polled
    finetune_poll_s: float = Field(default=20.0, gt=0, validation_alias="AGENTOP_FINETUNE_POLL_S")

    @model_validator(mode="after")
    def _metrics_with_a_wandb_key(self) -> Self:
        # A W&B key says the team uses W&B: every finished run's metrics go there.
        if self.wandb_api_key:
            self.wandb_run_metrics = True
        return self

    @property
    def hf_private(self) -> bool:
        return not self.hf_public

    @property
    def resolved_wandb_mode(self) -> WandbMode:
        if self.wandb_mode:
            return cast(WandbMode, self.wandb_mode)
        return "online" if self.wandb_api_key else "offline"
