"""Where the studio's templates and static files are."""

from __future__ import annotations

from pathlib import Path

from app.core.settings import PathSettings

# A checkout: beside the packages; an installed copy: AGENTOP_HOME.
ROOT = PathSettings.from_env().home or Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
