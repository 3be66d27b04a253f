"""What every settings model of the studio shares (pydantic-settings).

A setting read from the environment is a field that names its variable
(``validation_alias="AGENTOP_..."``), with its type, default and bounds written
once there. Only such fields are read from the environment, by their exact
name; the others (``auth``, ``agent_config``, ...) are set by the code that
builds the settings. An empty variable counts as unset.

Values come from, first to last: keyword arguments, the environment, the
field's default. ``from_env(**overrides)`` is the one call the studio makes;
a bad value there is a :class:`SettingsError` whose message is one line naming
the variable, the value and what was expected (``agentop`` prints it, exit 2).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class SettingsError(ValueError):
    """A setting has a value the studio cannot use; the message says which and why."""


class _DeclaredVariables(EnvSettingsSource):
    """The environment, for fields that name their variable only."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if not isinstance(field.validation_alias, str):
            return None, field_name, False
        return super().get_field_value(field, field_name)


class EnvSettings(BaseSettings):
    """Base of the settings models: declared variables, exact names, one-line errors."""

    model_config = SettingsConfigDict(
        case_sensitive=True,  # AGENTOP_X, as the shell spells it
        env_ignore_empty=True,  # AGENTOP_X= is unset, as before
        populate_by_name=True,  # Settings(data_dir=...) beside AGENTOP_DATA_DIR
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env file and no secrets directory: the environment is the one source.
        return (init_settings, _DeclaredVariables(settings_cls))

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """Settings from the environment; an override that is None leaves the variable's say."""
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise SettingsError(describe(exc, cls)) from None

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Environment variable -> field name, for every field read from the environment."""
        return {
            f.validation_alias: name
            for name, f in cls.model_fields.items()
            if isinstance(f.validation_alias, str)
        }


def describe(exc: ValidationError, model: type[EnvSettings]) -> str:
    """``AGENTOP_X='abc': Input should be a valid integer`` for each bad value, on one line."""
    by_field = {name: var for var, name in model.variables().items()}
    parts = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # Values given by field name are reported under their variable all the same.
        name = by_field.get(loc[0], loc[0]) if loc else exc.title
        where = ".".join([name, *loc[1:]])
        value = error.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float | bool) else ""
        # A check of ours reads "Value error, <message>": keep the message.
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}{shown}: {message}")
    return "invalid setting " + "; ".join(parts)
