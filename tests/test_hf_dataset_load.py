"""The Hugging Face export loads with ``datasets`` as a user would load it.

Runs are made through the API against the fake Mistral server (one asks for
two tools at once), exported as Parquet and as JSONL, and every config the
dataset card lists is loaded with ``datasets.load_dataset(folder, name=...)``:
the feature types (tool calls nested, not JSON text) and the row counts are
checked. With no evaluations the export has no ``evaluations`` file or
config, since an empty one cannot be loaded. A store of odd and corrupt rows
exports and loads too. Everything is local: ``datasets`` is kept offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from datasets import Features, List, Value, load_dataset

from app.exports.huggingface import EVALUATIONS_SCHEMA, RUNS_SCHEMA
from app.store import Store
from tests.conftest import MISTRAL_MODEL, wait_for_run
from tests.fake_mistral import Reply
from tests.odd_rows import seed_odd_data
from tests.receivers import wait_until

TOOL_CALL = {
    "id": Value("string"),
    "type": Value("string"),
    "function": {"name": Value("string"), "arguments": Value("string")},
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``datasets`` offline with its own cache; returns the cache dir."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    # datasets read the variables when first imported (maybe by another test): set it too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def load_every_config(folder: Path, cache: Path) -> dict[str, datasets.Dataset]:
    """Each config the card lists, loaded from the folder; the card must list what is there."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---")[1])
    names = [c["config_name"] for c in meta.get("configs", [])]
    files = {p.relative_to(folder).as_posix() for p in (folder / "data").iterdir()}
    assert files == {c["data_files"] for c in meta.get("configs", [])}
    return {
        name: load_dataset(str(folder), name=name, split="train", cache_dir=str(cache))
        for name in names
    }


def export(client: Any, fmt: str) -> dict[str, Any]:
    r = client.post("/api/exports", json={"kind": "huggingface", "format": fmt, "push": False})
    assert r.status_code == 202, r.text
    export_id = r.json()["export_id"]
    done = wait_until(
        lambda: (lambda e: e if e["status"] in ("succeeded", "failed") else None)(
            client.get(f"/api/exports/{export_id}").json()
        ),
        60,
        f"export {export_id}",
    )
    assert done["status"] == "succeeded", done["error"]
    return dict(done["result"])


def check_runs(runs: datasets.Dataset, run_id: str) -> None:
    assert runs.num_rows == 2
    assert runs.features == Features.from_arrow_schema(RUNS_SCHEMA)
    messages = runs.features["messages"]
    assert isinstance(messages, List)
    assert isinstance(messages.feature["tool_calls"], List)
    assert messages.feature["tool_calls"].feature == TOOL_CALL
    assert runs.features["tool_call_details"].feature["name"] == Value("string")

    run = next(r for r in runs if r["id"] == run_id)
    asking = next(m for m in run["messages"] if m["tool_calls"])
    assert [c["function"]["name"] for c in asking["tool_calls"]] == [
        "elevenlabs_speak",
        "hf_list_models",
    ]
    assert all(c["type"] == "function" and c["id"] for c in asking["tool_calls"])
    # Arguments stay JSON text: their shape depends on the tool.
    assert json.loads(asking["tool_calls"][0]["function"]["arguments"]) == {"text": "Paris"}
    answered = [m["tool_call_id"] for m in run["messages"] if m["role"] == "tool"]
    assert answered == [c["id"] for c in asking["tool_calls"]]
    plain = next(r for r in runs if r["id"] != run_id)
    assert all(m["tool_calls"] == [] for m in plain["messages"])


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_every_config_loads_with_nested_tool_calls(client, fake_mistral, offline, fmt):
    fake_mistral.add(
        Reply(
            tool_calls=[
                {"name": "elevenlabs_speak", "arguments": {"text": "Paris"}},
                {"name": "hf_list_models", "arguments": {"search": "mistral"}},
            ]
        ),
        Reply(text="Neither tool answered.", usage=(40, 4)),
        Reply(text="Hello there.", usage=(10, 2)),
    )
    ids = []
    for prompt in ("say Paris and list models", "hello"):
        r = client.post("/api/runs", json={"prompt": prompt, "model": MISTRAL_MODEL})
        assert r.status_code == 201, r.text
        ids.append(r.json()["run_id"])
        assert wait_for_run(client, ids[-1])["run"]["status"] == "succeeded"

    # No evaluations yet: no evaluations file and no config, yet "0 evaluations" is said.
    result = export(client, fmt)
    folder = Path(result["folder"])
    assert result["runs"] == 2 and result["evaluations"] == 0
    assert result["files"] == ["README.md", f"data/runs.{fmt}"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "**evaluations**: 0 rows" in card
    assert "arguments is JSON text" in card
    loaded = load_every_config(folder, offline)
    assert list(loaded) == ["runs"]
    check_runs(loaded["runs"], ids[0])

    r = client.post("/api/evals", json={"run_id": ids[0], "metric": "score", "value": 0.5})
    assert r.status_code == 201, r.text
    result = export(client, fmt)
    assert result["runs"] == 2 and result["evaluations"] == 1
    loaded = load_every_config(Path(result["folder"]), offline)
    assert list(loaded) == ["runs", "evaluations"]
    check_runs(loaded["runs"], ids[0])
    evaluations = loaded["evaluations"]
    assert evaluations.features == Features.from_arrow_schema(EVALUATIONS_SCHEMA)
    assert evaluations.features["value"] == Value("float64")
    assert evaluations.num_rows == 1 and evaluations[0]["run_id"] == ids[0]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_odd_and_corrupt_rows_export_and_load(tmp_path, offline, capsys, fmt):
    from app.cli import main

    data_dir = tmp_path / "data"
    store = Store(data_dir / "agentop.db")
    ids = seed_odd_data(store)
    stored_evaluations = store.read_sync(lambda db: db["evaluations"].count)
    store.close()

    assert main(["export", "hf", "--format", fmt, "--no-push", "--data-dir", str(data_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    loaded = load_every_config(Path(result["folder"]), offline)
    assert list(loaded) == ["runs", "evaluations"]
    runs = loaded["runs"]
    assert runs.num_rows == len(ids) == result["runs"]
    assert runs.features == Features.from_arrow_schema(RUNS_SCHEMA)
    assert loaded["evaluations"].num_rows == stored_evaluations == result["evaluations"]

    odd = next(r for r in runs if r["id"] == ids["odd"])
    calls = [m["tool_calls"] for m in odd["messages"]]
    # '[{"function": {"name": <lone surrogates>}}, 5, null]': one call, its text made valid;
    # '{"a": 1}' (not a list) and empty cells: no calls.
    assert len(calls) == 5
    assert [c for c in calls if c] == [
        [
            {
                "id": None,
                "type": "function",
                "function": {"name": "odd \ufffd text \ufffd", "arguments": "{}"},
            }
        ]
    ]
