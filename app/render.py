"""One Jinja environment for pages, htmx fragments and SSE partials.

Model output is untrusted: ``markdown`` renders it with Python-Markdown and
then sanitizes the HTML with nh3 (Ammonia), keeping only formatting tags and
http(s)/mailto links.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import markdown as md
import nh3
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from app.costs import format_cost

# Templates and static files live beside the packages in a checkout; an
# installed copy (the container image) points AGENTOP_HOME at them.
ROOT = Path(os.environ.get("AGENTOP_HOME") or Path(__file__).resolve().parent.parent)
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "del",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


def render_markdown(text: str | None) -> Markup:
    if not text:
        return Markup("")
    html = md.markdown(text, extensions=["fenced_code", "tables", "sane_lists"])
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)


def format_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


def format_ts(value: float | None) -> str:
    if not value:
        return "—"
    return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_int(value: int | None) -> str:
    return f"{value or 0:,}"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def run_cost(run: dict[str, Any]) -> str:
    return format_cost(run.get("cost_usd"), run.get("cost_status"))


def format_usd(value: float | None) -> str:
    return format_cost(value or 0.0, "priced")


def make_environment(templates_dir: Path = TEMPLATES_DIR) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(["html", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        markdown=render_markdown,
        ms=format_ms,
        ts=format_ts,
        int=format_int,
        pretty_json=pretty_json,
        run_cost=run_cost,
        usd=format_usd,
    )
    return env


def render_partial(env: Environment, name: str, **context: Any) -> str:
    return env.get_template(f"partials/{name}.html").render(**context)
