"""Hugging Face dataset export: runs and evaluations as Parquet or JSONL, plus a dataset card.

The folder is written locally first (``data/runs.*``, ``data/evaluations.*``,
``README.md`` with the card's YAML metadata and ``configs`` so the Hub's
viewer finds both tables), then pushed with ``huggingface_hub`` to the
configured dataset repo, creating it if needed. The push retries with
backoff; huggingface_hub honours ``HF_ENDPOINT`` and so do we. pyarrow and
huggingface_hub come with the 'hf' extra; without it the export fails at
once with a message naming that extra.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader

from agents.extras import require
from app.core.integration_settings import IntegrationSettings
from app.core.outbound import PermanentError, Recorder, call_with_retry
from app.core.paths import TEMPLATES_DIR
from app.exports.records import evaluation_records, run_ids, run_records

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("parquet", "jsonl")
REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")


def schemas() -> tuple[pa.Schema, pa.Schema]:
    """The runs and evaluations tables' schemas; pyarrow comes with the 'hf' extra."""
    require("pyarrow", "hf")
    import pyarrow as pa

    message = pa.struct(
        [
            ("role", pa.string()),
            ("content", pa.string()),
            ("tool_calls", pa.string()),
            ("tool_call_id", pa.string()),
            ("name", pa.string()),
        ]
    )
    tool_call = pa.struct(
        [
            ("call_id", pa.string()),
            ("name", pa.string()),
            ("arguments", pa.string()),
            ("result", pa.string()),
            ("error", pa.string()),
            ("status", pa.string()),
            ("latency_ms", pa.float64()),
            ("cost_usd", pa.float64()),
        ]
    )
    runs = pa.schema(
        [
            ("id", pa.string()),
            ("session_id", pa.string()),
            ("parent_run_id", pa.string()),
            ("status", pa.string()),
            ("source", pa.string()),
            ("model", pa.string()),
            ("provider", pa.string()),
            ("params", pa.string()),
            ("prompt", pa.string()),
            ("response", pa.string()),
            ("error", pa.string()),
            ("started_at", pa.float64()),
            ("ended_at", pa.float64()),
            ("latency_ms", pa.float64()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("cost_usd", pa.float64()),
            ("cost_status", pa.string()),
            ("tool_calls", pa.int64()),
            ("tool_errors", pa.int64()),
            ("usage_unknown_calls", pa.int64()),
            ("extra_cost_usd", pa.float64()),
            ("messages", pa.list_(message)),
            ("tool_call_details", pa.list_(tool_call)),
        ]
    )
    evaluations = pa.schema(
        [
            ("id", pa.int64()),
            ("run_id", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("label", pa.string()),
            ("comment", pa.string()),
            ("source", pa.string()),
            ("passed", pa.int64()),
            ("created_at", pa.float64()),
        ]
    )
    return runs, evaluations


def __getattr__(name: str) -> Any:
    # RUNS_SCHEMA and EVALUATIONS_SCHEMA are built on first use, so that the
    # studio imports and serves without pyarrow (the 'hf' extra).
    if name == "RUNS_SCHEMA":
        return schemas()[0]
    if name == "EVALUATIONS_SCHEMA":
        return schemas()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FIELD_DOCS = {
    "id": "run id",
    "session_id": "session the run belongs to",
    "parent_run_id": "the run this one replays",
    "status": "succeeded, failed or interrupted",
    "source": "studio, api, cli or otlp (ingested)",
    "params": "generation parameters (JSON)",
    "messages": "the conversation: role, content, tool_calls (JSON), tool_call_id, name",
    "tool_call_details": "each tool call with arguments (JSON), result, error, latency, cost",
    "cost_usd": "total cost in USD (tokens and beyond)",
    "cost_status": "priced, free, unpriced or partial",
    "extra_cost_usd": "cost beyond tokens (speech…)",
    "input_tokens": "tokens in; null when a model call reported no usage (unknown)",
    "output_tokens": "tokens out; null when a model call reported no usage (unknown)",
    "usage_unknown_calls": "model calls whose provider reported no usage",
}


class ExportError(ValueError):
    """Bad export options (a 4xx) or an export that cannot be made."""


def check_repo(repo: str) -> str:
    repo = (repo or "").strip()
    if not REPO_RE.match(repo):
        raise ExportError("repo must look like namespace/dataset-name")
    return repo


def _write_table(rows: list[dict[str, Any]], schema: pa.Schema, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    else:
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def dataset_card(context: dict[str, Any]) -> str:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=False, keep_trailing_newline=True
    )
    return env.get_template("exports/dataset_card.md").render(**context)


def write_dataset(
    db: Any,
    folder: Path,
    fmt: str,
    repo: str | None,
    progress: Callable[[float, str], None] = lambda f, s: None,
) -> dict[str, Any]:
    """Write the dataset folder from ``db`` (a read connection); return what was written."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    # Before any work: without the 'hf' extra the export fails at once, saying so.
    runs_schema, evaluations_schema = schemas()
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    ids = run_ids(db)
    runs: list[dict[str, Any]] = []
    for record in run_records(db, ids):
        runs.append(record)
        if len(runs) % 200 == 0:
            progress(
                0.1 + 0.4 * len(runs) / max(1, len(ids)), f"read {len(runs)} of {len(ids)} runs"
            )
    evaluations = evaluation_records(db)
    _write_table(runs, runs_schema, data / f"runs.{fmt}", fmt)
    _write_table(evaluations, evaluations_schema, data / f"evaluations.{fmt}", fmt)
    progress(0.6, "wrote data files")
    context = {
        "repo": repo,
        "fmt": fmt,
        "runs": len(runs),
        "evaluations": len(evaluations),
        "exported_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "models": Counter(r["model"] for r in runs).most_common(),
        "statuses": Counter(r["status"] for r in runs).most_common(),
        "sources": Counter(r["source"] for r in runs).most_common(),
        "metrics": Counter(e["metric"] for e in evaluations).most_common(),
        "runs_schema": [(f.name, str(f.type), FIELD_DOCS.get(f.name, "")) for f in runs_schema],
        "evaluations_schema": [(f.name, str(f.type)) for f in evaluations_schema],
        "size_category": "n<1K"
        if len(runs) < 1000
        else ("1K<n<10K" if len(runs) < 10_000 else "10K<n<100K"),
    }
    (folder / "README.md").write_text(dataset_card(context), encoding="utf-8")
    return {
        "folder": str(folder),
        "runs": len(runs),
        "evaluations": len(evaluations),
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
    }


def push_dataset(
    folder: Path, repo: str, settings: IntegrationSettings, subject: str, record: Recorder | None
) -> str:
    """Create the dataset repo if needed and upload the folder; return the commit URL."""
    require("huggingface_hub", "hf")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=settings.hf_endpoint or None, token=settings.hf_token or None)

    def push() -> str:
        try:
            api.create_repo(repo, repo_type="dataset", private=settings.hf_private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo,
                repo_type="dataset",
                folder_path=str(folder),
                commit_message="AgentOp-Studio export",
            )
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise PermanentError(f"Hugging Face refused the token ({status}): {exc}") from exc
            raise
        return str(commit.commit_url if hasattr(commit, "commit_url") else commit)

    return call_with_retry(
        push,
        integration="huggingface",
        action="push dataset",
        subject=subject,
        settings=settings,
        record=record,
    )
