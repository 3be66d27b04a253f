"""Hugging Face dataset export: runs and evaluations as Parquet or JSONL, plus a dataset card.

The folder is written locally first (``data/runs.*``, ``data/evaluations.*``,
``README.md`` with the card's YAML metadata and ``configs`` so the Hub's
viewer and ``datasets.load_dataset`` find the tables), then pushed with ``huggingface_hub`` to the
configured dataset repo, creating it if needed. The push retries with
backoff; huggingface_hub honours ``HF_ENDPOINT`` and so do we. pyarrow and
huggingface_hub come with the 'hf' extra; without it the export fails at
once with a message naming that extra.

A table with no rows is not written (``datasets`` cannot load an empty
file), and a message's tool calls are nested data, typed alike in Parquet
and JSONL (the card declares the features).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.extras import require
from app.core.integration_settings import IntegrationSettings
from app.core.outbound import PermanentError, Recorder, call_with_retry
from app.exports.dataset_card import FIELD_DOCS, dataset_card, metadata
from app.exports.records import evaluation_records, run_ids, run_records, tool_call_list

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("parquet", "jsonl")
REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")


def schemas() -> tuple[pa.Schema, pa.Schema]:
    """The runs and evaluations tables' schemas; pyarrow comes with the 'hf' extra."""
    require("pyarrow", "hf")
    import pyarrow as pa

    # As the model sent it; arguments stay JSON text, their shape depends on the tool.
    message_tool_call = pa.struct(
        [
            ("id", pa.string()),
            ("type", pa.string()),
            ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())])),
        ]
    )
    message = pa.struct(
        [
            ("role", pa.string()),
            ("content", pa.string()),
            ("tool_calls", pa.list_(message_tool_call)),
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


def _nested(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with each message's tool calls as nested data, not the stored JSON text."""
    messages = [m | {"tool_calls": tool_call_list(m["tool_calls"])} for m in record["messages"]]
    return record | {"messages": messages}


def write_dataset(
    db: Any,
    folder: Path,
    fmt: str,
    repo: str | None,
    progress: Callable[[float, str], None] = lambda f, s: None,
    repo_url: str = "",
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
        runs.append(_nested(record))
        if len(runs) % 200 == 0:
            progress(
                0.1 + 0.4 * len(runs) / max(1, len(ids)), f"read {len(runs)} of {len(ids)} runs"
            )
    evaluations = evaluation_records(db)
    tables = {"runs": (runs, runs_schema), "evaluations": (evaluations, evaluations_schema)}
    written = {}
    for name, (rows, schema) in tables.items():
        path = data / f"{name}.{fmt}"
        if rows:
            _write_table(rows, schema, path, fmt)
            written[name] = schema
        else:
            # No rows, no file and no config: datasets cannot load an empty Parquet or JSONL.
            path.unlink(missing_ok=True)
    progress(0.6, "wrote data files")
    size_category = (
        "n<1K" if len(runs) < 1000 else ("1K<n<10K" if len(runs) < 10_000 else "10K<n<100K")
    )
    context = {
        "metadata": metadata(fmt, written, size_category),
        "configs": list(written),
        "repo": repo,
        "repo_url": repo_url,
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
