"""Launching Chromium for browser tests: Debian's build first, Playwright's own as fallback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
SHOTS_DIR = Path(__file__).resolve().parent.parent / "test-results" / "screenshots"


def system_chromium() -> str | None:
    explicit = os.environ.get("AGENTOP_CHROMIUM")
    if explicit:
        return explicit
    for name in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(name).exists():
            return name
    return shutil.which("chromium")


def launch(playwright):  # type: ignore[no-untyped-def]
    path = system_chromium()
    if path:
        return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    return playwright.chromium.launch(args=CHROMIUM_ARGS)


def save_shot(page, tmp_path: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Screenshot into the test's tmp dir and a copy under test-results/ for people."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS_DIR / path.name)
    return path


def log_in(page, base_url: str, key: str) -> None:  # type: ignore[no-untyped-def]
    """Log in through the login page, as a person does."""
    page.goto(base_url + "/")
    page.wait_for_url("**/login?next=*")
    page.fill("input[name=key]", key)
    page.click("main button[type=submit]")
    page.wait_for_url(base_url + "/")
