"""Every setting is documented: each environment variable the settings models
declare, the code reads or the agent config references appears in the README's
configuration section."""

import re
from pathlib import Path

from pydantic import Field

import app.cli  # noqa: F401  every module of the studio, so every settings model is defined
from app.core.settings_base import EnvSettings

ROOT = Path(__file__).resolve().parent.parent
READS = re.compile(
    r"""(?:environ\.get|env\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']|env\[["']([A-Z][A-Z0-9_]+)["']\]"""
)


def settings_models(package: str = "app.") -> list[type[EnvSettings]]:
    """The settings models defined under ``package``, found by themselves (no list to keep)."""
    found, todo = [], [EnvSettings]
    while todo:
        subclasses = todo.pop().__subclasses__()
        todo += subclasses
        found += [c for c in subclasses if c.__module__.startswith(package)]
    return found


def settings_read(package: str = "app.") -> set[str]:
    names = {name for model in settings_models(package) for name in model.variables()}
    # Reads outside the settings models (agents/ cannot import them).
    for path in list((ROOT / "app").rglob("*.py")) + list((ROOT / "agents").rglob("*.py")):
        for match in READS.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", (ROOT / "agents/config.yaml").read_text()))
    return names


def undocumented(names: set[str]) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    config = readme[readme.index("## Configuration") :]
    return sorted(n for n in names if not re.search(rf"\b{n}\b", config))


def test_every_setting_is_documented():
    names = settings_read()
    assert len(names) > 30  # the scan itself works
    assert {"AGENTOP_MAX_CONCURRENT_RUNS", "AGENTOP_SMTP_PORT", "AGENTOP_HOME"} <= names
    assert undocumented(names) == []


def test_a_new_setting_without_docs_is_caught():
    class Knobs(EnvSettings):
        knob: int = Field(default=1, validation_alias="AGENTOP_UNDOCUMENTED_KNOB")

    assert settings_models(__name__) == [Knobs]
    assert undocumented(settings_read(__name__)) == ["AGENTOP_UNDOCUMENTED_KNOB"]
