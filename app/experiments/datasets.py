"""Datasets: lists of inputs with optional expected outputs, for experiments.

A dataset comes from a CSV or JSONL upload, from a JSON list, or from runs a
person picked (each run's prompt becomes an input and its answer, or the
human correction of it, the expected output). Parsing reports the first bad
row by number so a 4xx says exactly what to fix.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from sqlite_utils import Database

from app.core.errors import InputError
from app.evals.store import latest_correction
from app.experiments.bodies import MAX_ITEMS, DatasetCreate, Format
from app.store.rows import decode_json
from app.store.statuses import SUCCEEDED

MAX_TEXT_CHARS = 20_000
INPUT_KEYS = ("input", "prompt", "question")
EXPECTED_KEYS = ("expected", "expected_output", "reference", "answer", "output")


def _pick(row: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    lowered = {str(k).strip().lower(): k for k in row}
    for key in keys:
        if key in lowered:
            return lowered[key], row[lowered[key]]
    return None, None


def _text(value: Any, what: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        # Structured expectations (a JSON object to match) are kept as JSON text.
        value = json.dumps(value, ensure_ascii=False)
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(f"{where}: {what} is longer than {MAX_TEXT_CHARS} characters")
    return value


def normalize_item(row: Any, where: str) -> dict[str, Any]:
    """One item from a CSV row or JSON object: input, expected, the rest as metadata."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: each item must be an object with an input")
    input_key, value = _pick(row, INPUT_KEYS)
    if input_key is None:
        raise InputError(f"{where}: no input (name a field input, prompt or question)")
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: input must be a non-empty string")
    text = _text(value.strip(), "input", where)
    expected_key, expected = _pick(row, EXPECTED_KEYS)
    expected_text = _text(expected, "expected", where)
    if isinstance(expected_text, str) and not expected_text.strip():
        expected_text = None
    metadata = {str(k): v for k, v in row.items() if k not in (input_key, expected_key)}
    return {"input": text, "expected": expected_text, "metadata": metadata}


def _check_count(items: list[Any]) -> None:
    if not items:
        raise InputError("the dataset has no items")
    if len(items) > MAX_ITEMS:
        raise InputError(f"a dataset holds at most {MAX_ITEMS} items")


def parse_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items of a JSON body (a list of objects of the right length already)."""
    return [normalize_item(row, f"item {i}") for i, row in enumerate(items, 1)]


def parse_csv(text: str) -> list[dict[str, Any]]:
    try:
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
    except csv.Error as exc:
        raise InputError(f"not valid CSV: {exc}") from None
    if not reader.fieldnames:
        raise InputError("the CSV file is empty (a header row with an input column comes first)")
    if not any(str(f).strip().lower() in INPUT_KEYS for f in reader.fieldnames if f):
        raise InputError("the CSV header needs an input column (input, prompt or question)")
    _check_count(rows)
    # Row numbers as a person sees them in a spreadsheet: the header is row 1.
    return [
        normalize_item({k: v for k, v in row.items() if k is not None}, f"row {i}")
        for i, row in enumerate(rows, 2)
    ]


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"line {number}: not valid JSON ({exc.msg})") from None
    _check_count(rows)
    return [normalize_item(row, f"line {number}") for number, row in rows]


def parse_upload(text: str, filename: str = "", fmt: Format | None = None) -> list[dict[str, Any]]:
    """Items from an uploaded file: by explicit format, by extension, else by sniffing."""
    name = filename.lower()
    if fmt is None:
        if name.endswith(".csv"):
            fmt = "csv"
        elif name.endswith((".jsonl", ".ndjson", ".json")):
            fmt = "jsonl"
        else:
            fmt = "jsonl" if text.lstrip().startswith("{") else "csv"
    return parse_csv(text) if fmt == "csv" else parse_jsonl(text)


def items_of(body: DatasetCreate) -> tuple[list[dict[str, Any]], str]:
    """The items a ``POST /api/datasets`` body gives, and the dataset's source."""
    if body.items is not None and body.content is not None:
        raise InputError("give items or content, not both")
    if body.items is not None:
        return parse_items(body.items), "api"
    if body.content is None:
        raise InputError("give items (a list) or content (CSV or JSONL text)")
    return parse_upload(body.content, fmt=body.format), body.format or "jsonl"


def create_dataset(
    db: Database,
    name: str,
    items: list[dict[str, Any]],
    source: str,
    description: str | None = None,
    created_by: str | None = None,
) -> dict[str, Any]:
    """Store a dataset and its items (already checked); ``name`` is trimmed."""
    dataset_id = (
        db.table("datasets")
        .insert(
            {
                "name": name.strip(),
                "description": description,
                "source": source,
                "item_count": len(items),
                "created_by": created_by,
                "created_at": time.time(),
            }
        )
        .last_pk
    )
    assert dataset_id is not None  # the row was just inserted
    db.table("dataset_items").insert_all(
        {
            "dataset_id": dataset_id,
            "idx": i,
            "input": item["input"],
            "expected": item.get("expected"),
            "metadata": json.dumps(item.get("metadata") or {}, ensure_ascii=False, default=str),
        }
        for i, item in enumerate(items)
    )
    dataset = get_dataset(db, dataset_id)
    assert dataset is not None
    return dataset


def dataset_from_runs(
    db: Database, name: str, run_ids: list[str], created_by: str | None = None
) -> dict[str, Any]:
    """A dataset of the runs' prompts; expected = the human correction, else the answer."""
    items = []
    for run_id in dict.fromkeys(run_ids):  # keep order, drop repeats
        row = db.execute(
            "select prompt, response, status, model from runs where id = ?", [run_id]
        ).fetchone()
        if row is None:
            raise InputError(f"run {run_id!r} not found")
        prompt, response, status, model = row
        if not prompt:
            raise InputError(f"run {run_id!r} has no prompt")
        expected = latest_correction(db, run_id)
        if expected is None and status == SUCCEEDED:
            expected = response
        items.append(
            {"input": prompt, "expected": expected, "metadata": {"run_id": run_id, "model": model}}
        )
    return create_dataset(db, name, items, "runs", created_by=created_by)


def get_dataset(db: Database, dataset_id: int) -> dict[str, Any] | None:
    rows = list(db.query("select * from datasets where id = ?", [dataset_id]))
    return dict(rows[0]) if rows else None


def dataset_items(db: Database, dataset_id: int) -> list[dict[str, Any]]:
    rows = db.query("select * from dataset_items where dataset_id = ? order by idx", [dataset_id])
    out = []
    for r in rows:
        item = decode_json(r, "metadata")
        # A cell that is not a JSON object (hand-edited, corrupt) reads as no metadata.
        if not isinstance(item["metadata"], dict):
            item["metadata"] = {}
        out.append(item)
    return out


def list_datasets(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.query(
            "select * from datasets order by created_at desc, id desc limit ?", [limit]
        )
    ]
