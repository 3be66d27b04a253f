"""The Hugging Face dataset card: YAML metadata that the Hub and ``datasets`` read, then prose.

The metadata lists a config only for a table that was written: an empty
Parquet or JSONL file cannot be loaded ("BatchSize must be greater than 0"),
so an export with no evaluations has no ``evaluations`` config. Each config's
features are declared too (``dataset_info``), so a JSONL export loads with
the same nested types as Parquet rather than types guessed from the rows at
hand (an export whose runs made no tool call would otherwise get a list of
nulls).

The prose names the studio and links to its repository when one is set
(``AGENTOP_REPO_URL``, passed in the context as ``repo_url``); with none it
links to nothing rather than to a placeholder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import yaml
from jinja2 import Environment, FileSystemLoader

from app.core.paths import TEMPLATES_DIR

if TYPE_CHECKING:
    import pyarrow as pa

FIELD_DOCS = {
    "id": "run id",
    "session_id": "session the run belongs to",
    "parent_run_id": "the run this one replays",
    "status": "succeeded, failed or interrupted",
    "source": "studio, api, cli or otlp (ingested)",
    "params": "generation parameters (JSON)",
    "messages": (
        "the conversation: role, content, tool_calls, tool_call_id, name. tool_calls is a list"
        " of {id, type, function: {name, arguments}}; arguments is JSON text, since its shape"
        " depends on the tool"
    ),
    "tool_call_details": "each tool call with arguments (JSON), result, error, latency, cost",
    "cost_usd": "total cost in USD (tokens and beyond)",
    "cost_status": "priced, free, unpriced or partial",
    "extra_cost_usd": "cost beyond tokens (speech…)",
    "input_tokens": "tokens in; null when a model call reported no usage (unknown)",
    "output_tokens": "tokens out; null when a model call reported no usage (unknown)",
    "usage_unknown_calls": "model calls whose provider reported no usage",
}
# pyarrow type names as ``datasets`` spells them in a card (``Value(dtype)``).
DTYPES = {"string": "string", "int64": "int64", "double": "float64", "bool": "bool"}


def _feature(kind: pa.DataType) -> dict[str, Any]:
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return {"struct": [{"name": f.name, **_feature(f.type)} for f in kind]}
    if pa.types.is_list(kind):
        inner = _feature(kind.value_type)
        # datasets writes a list of structs as ``list: [fields]`` and of values as ``list: dtype``.
        return {"list": inner.get("struct", inner.get("dtype", inner))}
    return {"dtype": DTYPES[str(kind)]}


def features(schema: pa.Schema) -> list[dict[str, Any]]:
    """``schema`` as a card's ``dataset_info.features``, the form ``datasets`` writes and reads."""
    return [{"name": f.name, **_feature(f.type)} for f in schema]


def metadata(fmt: str, tables: dict[str, pa.Schema], size_category: str) -> dict[str, Any]:
    """The card's YAML metadata; ``tables`` are the configs written (name → schema), first default."""
    configs = [
        {"config_name": name, "data_files": f"data/{name}.{fmt}"}
        | ({"default": True} if i == 0 else {})
        for i, name in enumerate(tables)
    ]
    meta: dict[str, Any] = {
        "pretty_name": "AgentOp-Studio runs",
        "license": "other",
        "language": ["en"],
        "tags": ["agents", "tool-calling", "llm-traces", "agentop-studio"],
        "task_categories": ["text-generation"],
        "size_categories": [size_category],
    }
    if tables:
        meta["configs"] = configs
        meta["dataset_info"] = [
            {"config_name": name, "features": features(schema)} for name, schema in tables.items()
        ]
    return meta


def repo_link(url: str | None) -> str:
    """``url`` fit for a Markdown link, or "" when unset or not an http(s) URL.

    Brackets, parentheses and spaces are percent-encoded so the URL cannot end
    the link early or add Markdown of its own.
    """
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return quote(url, safe=":/?#@!$&'*+,;=%~-._")


def dataset_card(context: dict[str, Any]) -> str:
    """The card's text; ``context["metadata"]`` is the dict from :func:`metadata`,
    ``context["repo_url"]`` the studio's repository (optional)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=False, keep_trailing_newline=True
    )
    header = yaml.safe_dump(context["metadata"], sort_keys=False, allow_unicode=True)
    return env.get_template("exports/dataset_card.md").render(
        **context, metadata_yaml=header, studio_link=repo_link(context.get("repo_url"))
    )
