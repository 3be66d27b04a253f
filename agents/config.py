"""Load ``agents/config.yaml`` (or another file) with ``${ENV}`` interpolation.

``${NAME}`` is replaced by the environment variable (an error if unset) and
``${NAME:-default}`` falls back to the default. Interpolation happens on the
text before YAML parsing, so numbers and booleans keep their types.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.providers.local import LocalModel
from agents.providers.local_model import DEFAULT_TIMEOUT_S

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Values YAML reads as themselves (or as a number or boolean): no leading
# indicator such as '@' or a lone '-', and no '~' (null).
_PLAIN = re.compile(r"(?![@-])[\w.\-/+@]*|-[\w.][\w.\-/+@]*")


class ConfigError(ValueError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            value = env[name]
        elif default is not None:
            value = default
        else:
            raise ConfigError(f"environment variable {name} is not set")
        # Quote so that YAML reads a value with ': ' or '#' as one string.
        return value if _PLAIN.fullmatch(value) else json.dumps(value, ensure_ascii=False)

    return _VAR.sub(replace, text)


@dataclass(frozen=True)
class MistralConfig:
    api_key: str = ""
    server_url: str = ""
    models: tuple[str, ...] = ()
    retry_initial_ms: int = 500
    retry_max_elapsed_ms: int = 60000
    timeout_ms: int = 120000


@dataclass(frozen=True)
class AgentConfig:
    default_model: str = ""
    max_rounds: int = 4
    max_tokens: int = 512
    temperature: float = 0.7
    local_models: tuple[LocalModel, ...] = ()
    mistral: MistralConfig = field(default_factory=MistralConfig)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def resolved_default_model(self) -> str:
        if self.default_model:
            return self.default_model
        if self.mistral.api_key and self.mistral.models:
            return self.mistral.models[0]
        return self.local_models[0].name if self.local_models else ""

    def model_choices(self) -> list[tuple[str, str]]:
        """(model, provider) pairs a user can pick from."""
        choices = [(m.name, "local") for m in self.local_models]
        if self.mistral.api_key:
            choices += [(m, "mistral") for m in self.mistral.models]
        return choices


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def load_config(
    path: Path | str | None = None, env: Mapping[str, str] | None = None
) -> AgentConfig:
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(interpolate(path.read_text(), os.environ if env is None else env))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    raw = raw or {}
    local = [
        LocalModel(
            name=str(m["name"]),
            gguf=_str(m.get("gguf")),
            n_ctx=int(m.get("n_ctx") or 4096),
            n_threads=int(m["n_threads"]) if m.get("n_threads") else None,
            weight_repack=bool(m.get("weight_repack") or False),
            timeout_s=float(m.get("timeout_s") or DEFAULT_TIMEOUT_S),
        )
        for m in (raw.get("local") or {}).get("models") or []
    ]
    m = raw.get("mistral") or {}
    temperature = raw.get("temperature")
    mistral = MistralConfig(
        api_key=_str(m.get("api_key")),
        server_url=_str(m.get("server_url")),
        models=tuple(str(x) for x in m.get("models") or []),
        retry_initial_ms=int(m.get("retry_initial_ms") or 500),
        retry_max_elapsed_ms=int(m.get("retry_max_elapsed_ms") or 60000),
        timeout_ms=int(m.get("timeout_ms") or 120000),
    )
    return AgentConfig(
        default_model=_str(raw.get("default_model")),
        max_rounds=int(raw.get("max_rounds") or 4),
        max_tokens=int(raw.get("max_tokens") or 512),
        temperature=float(temperature if temperature is not None else 0.7),
        local_models=tuple(local),
        mistral=mistral,
        tools={name: dict(settings or {}) for name, settings in (raw.get("tools") or {}).items()},
    )
