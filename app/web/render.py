"""One Jinja environment for pages, htmx fragments and SSE partials.

Model output is untrusted: ``markdown`` renders it with Python-Markdown and
then sanitizes the HTML with nh3 (Ammonia), keeping only formatting tags and
http(s)/mailto links.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import markdown as md
import nh3
from jinja2 import (
    ChainableUndefined,
    Environment,
    FileSystemLoader,
    Undefined,
    pass_environment,
    select_autoescape,
)
from jinja2.filters import do_truncate
from markupsafe import Markup

from app.core.formats import (
    MISSING,
    format_exact,
    format_int,
    format_metric,
    format_ms,
    format_num,
    format_pct,
    format_ratio,
    format_ts,
    format_usd,
    number,
)
from app.core.paths import TEMPLATES_DIR
from app.core.text import safe_text
from app.pricing.costs import format_cost, usage_reason
from app.web.markdown_budget import within_budget

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

log = logging.getLogger("agentop.render")


def _finalize(value: Any) -> Any:
    """Applied to every ``{{ … }}`` output: None is "—", markup stays markup, text is made safe."""
    if value is None:
        return MISSING
    if isinstance(value, Markup):
        return Markup(safe_text(value))
    if isinstance(value, str):
        return safe_text(value)
    return value


@pass_environment
def truncate(
    env: Environment,
    value: Any,
    length: int = 255,
    killwords: bool = False,
    end: str = "...",
    leeway: int | None = None,
) -> str:
    """Jinja's ``truncate`` that takes None (as "") and non-text values (as their text)."""
    if value is None or isinstance(value, Undefined):
        return ""
    text = value if isinstance(value, str) else str(value)
    return do_truncate(env, text, length, killwords, end, leeway)


@pass_environment
def clip(env: Environment, value: Any, length: int = 80) -> str:
    """Text shortened for a table cell; "—" when missing or empty."""
    if value is None or value == "" or isinstance(value, Undefined):
        return MISSING
    text = value if isinstance(value, str) else str(value)
    return do_truncate(env, text, length)


@pass_environment
def run_title(env: Environment, run: Any, length: int = 80) -> str:
    """What names a run in a list: its prompt, else the root span's name (OTLP), else "—"."""
    if not isinstance(run, dict):
        return MISSING
    return clip(env, run.get("prompt") or run.get("label"), length)


def render_markdown(text: Any) -> Markup:
    if not text:
        return Markup("")
    if not isinstance(text, str):
        text = str(text)
    if not within_budget(text):
        # Bracket soup would take Python-Markdown seconds to minutes: show it as it is.
        return Markup('<pre class="plain">{}</pre>').format(safe_text(text))
    html = md.markdown(safe_text(text), extensions=["fenced_code", "tables", "sane_lists"])
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def run_cost(run: Any) -> str:
    if not isinstance(run, dict):
        return MISSING
    usd = run.get("cost_usd")
    if usd is not None and number(usd) is None:
        return MISSING
    return format_cost(usd, run.get("cost_status"), usage_reason(run))


def make_environment(templates_dir: Path = TEMPLATES_DIR) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(["html", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        # Rows decoded from JSON may lack a key or have another shape than
        # expected: ``a.b.c`` then renders empty instead of failing the page.
        undefined=ChainableUndefined,
        finalize=_finalize,
    )
    env.filters.update(
        clip=clip,
        run_title=run_title,
        truncate=truncate,
        markdown=render_markdown,
        pretty_json=pretty_json,
        # One number format everywhere (app.core.formats): durations, timestamps,
        # counts, money, percentages (0-100 and 0-1), plain values, metrics by name.
        ms=format_ms,
        ts=format_ts,
        int=format_int,
        usd=format_usd,
        run_cost=run_cost,
        pct=format_pct,
        ratio=format_ratio,
        num=format_num,
        exact=format_exact,
        metric=format_metric,
    )
    return env


def render_partial(env: Environment, name: str, **context: Any) -> str:
    return env.get_template(f"partials/{name}.html").render(**context)


def render_live(env: Environment, name: str, tag: str = "span", **context: Any) -> str:
    """A partial for a live stream; if it fails, a placeholder ``tag`` element instead.

    One event that cannot be rendered (odd data, a template bug) is logged and
    replaced, so the stream carries on for everyone who follows it.
    """
    try:
        return render_partial(env, name, **context)
    except Exception:
        log.exception("could not render the live partial %r", name)
        return render_partial(env, "_placeholder", tag=tag)
