"""Load ``agents/config.yaml`` (or another file): ``${ENV}`` references, then typed values.

The file is parsed as YAML first. Then, in every string value, ``${NAME}`` is
replaced by that variable of the environment mapping given (the studio's
``Settings.agents()`` passes the one its settings were read from), and
``${NAME:-default}`` falls back to the default when the variable is unset or
empty; an unset ``${NAME}`` without a default is an error. The substitution is
``string.Template``'s: a bare ``$NAME`` stays as written and ``$$`` is a ``$``.
A value that is one reference alone takes the type YAML gives the text it
became (``${AGENTOP_MAX_ROUNDS:-4}`` is the number 4, ``${X:-false}`` a
boolean, an empty one null); anything else stays a string, whatever characters
the variable holds, since substitution happens after parsing.

The values are then checked by pydantic against the dataclasses below (types
and bounds); a bad one is a :class:`ConfigError` naming its key and the
variable it came from. A key set to null counts as not set (its default).

A local model entry may say ``default_tools``: the tools a run on that model
gets when it names none (``[]``: none). A model that says nothing, and every
Mistral model, gets every configured tool. They are gathered into
``AgentConfig.default_tools`` (model name -> tool names), checked against the
configured tools.
"""

from __future__ import annotations

import dataclasses
import os
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AliasPath, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from agents.providers.local import LocalModel

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")
# Types a substituted reference may take; any other text stays a string
# ("~" or "[x]" from a variable is never read as null or a list).
_TYPED = {f"tag:yaml.org,2002:{kind}" for kind in ("int", "float", "bool")}

Location = tuple[str | int, ...]


class ConfigError(ValueError):
    """The agent config cannot be used: broken YAML, a missing variable, a bad value."""


class _Reference(string.Template):
    # ${NAME} or ${NAME:-default}; the bare form never matches, so $HOME stays as written.
    braceidpattern = r"[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?"
    idpattern = r"(?!)"


class _Lookup(Mapping[str, str]):
    """The value of each ``${...}`` reference, from ``env``; remembers the names read."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.used: list[str] = []

    def __getitem__(self, reference: str) -> str:
        name, has_default, default = reference.partition(":-")
        self.used.append(name)
        if self.env.get(name):
            return self.env[name]
        if has_default:
            return default
        raise ConfigError(f"environment variable {name} is not set")

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` with its ``${NAME}`` / ``${NAME:-default}`` references replaced from ``env``."""
    return _Reference(value).safe_substitute(_Lookup(env))


def _typed(text: str) -> Any:
    """A substituted reference as YAML types the same text written plainly."""
    if text == "":
        return None
    tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False))
    return yaml.safe_load(text) if tag in _TYPED else text


def _expand(value: Any, env: Mapping[str, str], at: Location, sources: dict) -> Any:
    """``value`` with references replaced in every string; ``sources`` maps each
    substituted location to the variables it was made of (for error messages)."""
    if isinstance(value, dict):
        return {k: _expand(v, env, (*at, k), sources) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, (*at, i), sources) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    lookup = _Lookup(env)
    try:
        text = _Reference(value).safe_substitute(lookup)
    except ConfigError as exc:
        raise ConfigError(f"{_dotted(at)}: {exc}") from None
    if not lookup.used:
        return value
    sources[at] = lookup.used
    whole = _Reference.pattern.fullmatch(value)
    return _typed(text) if whole and whole.group("braced") else text


def _given(value: Any) -> Any:
    """Mappings without their null entries: a key set to null takes its default."""
    if isinstance(value, dict):
        return {k: _given(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_given(v) for v in value]
    return value


@with_config(ConfigDict(coerce_numbers_to_str=True))
@dataclass(frozen=True)
class MistralConfig:
    api_key: str = ""
    server_url: str = ""
    models: tuple[str, ...] = ()
    retry_initial_ms: Annotated[int, Field(ge=0)] = 500
    retry_max_elapsed_ms: Annotated[int, Field(ge=0)] = 60000
    timeout_ms: Annotated[int, Field(ge=1)] = 120000


@with_config(ConfigDict(extra="allow"))
class ToolSettings(TypedDict, total=False):
    """Settings that tools share (checked); a tool's own settings pass through as written."""

    timeout: Annotated[float, Field(ge=0)]  # seconds (agents.tools.time_limit; 0 = default)
    max_depth: Annotated[int, Field(ge=0)]  # ask_agent: how deep helpers nest (0 = default)


@with_config(ConfigDict(coerce_numbers_to_str=True))
@dataclass(frozen=True)
class AgentConfig:
    default_model: str = ""
    max_rounds: Annotated[int, Field(ge=1)] = 4
    max_tokens: Annotated[int, Field(ge=1)] = 512
    temperature: Annotated[float, Field(ge=0)] = 0.7
    # In the file: local.models
    local_models: Annotated[
        tuple[LocalModel, ...], Field(validation_alias=AliasPath("local", "models"))
    ] = ()
    mistral: MistralConfig = field(default_factory=MistralConfig)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Model -> the tools a run on it gets when it names none; a model not here
    # gets every tool. In the file: ``default_tools`` on a local model's entry.
    default_tools: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def tools_by_default(self, model: str) -> tuple[str, ...] | None:
        """The tools a run on ``model`` gets when it names none; None: every tool."""
        return self.default_tools.get(model)

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


# Tools are checked apart: AgentConfig.tools stays plain dicts for the tools themselves.
_AGENT_CONFIG = TypeAdapter(AgentConfig)
_TOOLS = TypeAdapter(dict[str, ToolSettings])
_TOOL_NAMES = TypeAdapter(tuple[str, ...])


def _dotted(at: Location) -> str:
    return ".".join(str(part) for part in at) or "(top level)"


def _describe(errors: list[Any], sources: dict[Location, list[str]]) -> str:
    """One line per bad value: its key, the variables it came from, what was expected."""
    lines = []
    for error in errors:
        at = tuple(error["loc"])
        names = sources.get(at)
        where = _dotted(at) + (f" (from {', '.join(names)})" if names else "")
        value = error.get("input")
        shown = f" = {value!r}" if isinstance(value, str | int | float | bool) else ""
        # A check of ours reads "Value error, <message>": keep the message.
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}{shown}: {message}")
    return "; ".join(lines)


def _pop_default_tools(values: dict[str, Any]) -> dict[Location, Any]:
    """Take ``default_tools`` out of each local model's entry (LocalModel has no such
    field: it is the web process's business, not the model worker's), by location."""
    local = values.get("local")
    models = local.get("models") if isinstance(local, dict) else None
    found: dict[Location, Any] = {}
    for i, entry in enumerate(models if isinstance(models, list) else []):
        if isinstance(entry, dict) and entry.get("default_tools") is not None:
            found[("local", "models", i, "default_tools")] = (
                entry.get("name"),
                entry.pop("default_tools"),
            )
    return found


def _check_default_tools(
    found: dict[Location, Any], tools: dict[str, Any], errors: list[Any]
) -> dict[str, tuple[str, ...]]:
    """Model -> its default tools, each a configured tool; a bad entry goes to ``errors``."""
    defaults: dict[str, tuple[str, ...]] = {}
    for at, (model, raw) in found.items():
        try:
            names = _TOOL_NAMES.validate_python(raw)
        except ValidationError as exc:
            errors += [{**e, "loc": (*at, *e["loc"])} for e in exc.errors()]
            continue
        unknown = sorted(set(names) - set(tools))
        if unknown:
            configured = ", ".join(tools) or "none"
            message = f"unknown tool(s) {', '.join(unknown)}; configured: {configured}"
            errors.append({"loc": at, "msg": message, "input": None})
            continue
        defaults[str(model)] = names
    return defaults


def parse(
    text: str, env: Mapping[str, str], sources: dict[Location, list[str]] | None = None
) -> Any:
    """YAML ``text`` as data, with the references in its string values replaced from ``env``.

    ``sources``, when given, receives the variables behind each substituted location."""
    raw = yaml.safe_load(text)
    return _expand(raw, env, (), {} if sources is None else sources)


def load_config(
    path: Path | str | None = None, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """The agent config in ``path`` (the shipped one by default), references read from ``env``
    (``os.environ`` when None). Raises :class:`ConfigError` saying what is wrong and where."""
    path = Path(path) if path else DEFAULT_CONFIG
    sources: dict[Location, list[str]] = {}
    try:
        values = parse(path.read_text(), os.environ if env is None else env, sources)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    values = values if values is not None else {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, found {type(values).__name__}")
    tools = values.pop("tools", None) or {}
    if isinstance(tools, dict):
        tools = {name: settings or {} for name, settings in tools.items()}
    found = _pop_default_tools(values)
    errors: list[Any] = []
    config = AgentConfig()
    try:
        config = _AGENT_CONFIG.validate_python(_given(values))
    except ValidationError as exc:
        errors += exc.errors()
    try:
        tools = _TOOLS.validate_python(tools)
    except ValidationError as exc:
        errors += [{**e, "loc": ("tools", *e["loc"])} for e in exc.errors()]
    defaults = _check_default_tools(found, tools if isinstance(tools, dict) else {}, errors)
    if errors:
        raise ConfigError(f"{path}: {_describe(errors, sources)}")
    return dataclasses.replace(
        config,
        tools={name: dict(s) for name, s in tools.items()},
        default_tools={**config.default_tools, **defaults},
    )
