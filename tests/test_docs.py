"""Every setting is documented: each environment variable the code or the agent
config reads appears in the README's configuration section."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READS = re.compile(
    r"""(?:environ\.get|env\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']|env\[["']([A-Z][A-Z0-9_]+)["']\]"""
)


def settings_read() -> set[str]:
    names: set[str] = set()
    for path in list((ROOT / "app").rglob("*.py")) + list((ROOT / "agents").rglob("*.py")):
        for match in READS.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", (ROOT / "agents/config.yaml").read_text()))
    return names


def test_every_setting_is_documented():
    readme = (ROOT / "README.md").read_text()
    config = readme[readme.index("## Configuration") :]
    names = settings_read()
    assert len(names) > 30  # the scan itself works
    missing = sorted(n for n in names if n not in config)
    assert missing == []
