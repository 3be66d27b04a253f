"""``agentop export …``: the same exports as the studio's, from the terminal.

``agentop export hf [--repo R] [--format parquet|jsonl] [--no-push]``,
``agentop export wandb [--project P]`` and ``agentop export finetune
[--runs ID,ID] [--failed] [--below SCORE] [--out FILE]``. Each records an
export row (it shows on the exports page) and prints its progress.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from app.core.settings import Settings
from app.exports.huggingface import ExportError
from app.exports.jobs import insert_export, parse_options, run_export, update_export
from app.store import Store

KIND = {"hf": "huggingface", "wandb": "wandb", "finetune": "finetune_jsonl"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser("export", help="export runs: hf, wandb or finetune")
    kinds = export.add_subparsers(dest="export_kind", required=True)
    hf = kinds.add_parser("hf", help="Hugging Face dataset (Parquet or JSONL + card)")
    hf.add_argument("--repo", help="dataset repo, namespace/name (default AGENTOP_HF_REPO)")
    hf.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    hf.add_argument("--no-push", action="store_true", help="only write the local folder")
    wb = kinds.add_parser("wandb", help="W&B artifact: SQLite snapshot + per-run JSON")
    wb.add_argument("--project")
    ft = kinds.add_parser("finetune", help="Mistral fine-tuning JSONL")
    ft.add_argument("--runs", help="comma-separated run ids to include")
    ft.add_argument("--failed", action="store_true", help="failed runs (with a correction)")
    ft.add_argument("--below", type=float, help="runs scored below this (with a correction)")
    ft.add_argument("--out", help="also copy the JSONL here")
    for p in (hf, wb, ft):
        p.add_argument("--data-dir")
    export.set_defaults(func=cmd_export)


def _options(args: argparse.Namespace) -> dict:
    if args.export_kind == "hf":
        return {"repo": args.repo, "format": args.format, "push": not args.no_push}
    if args.export_kind == "wandb":
        return {"project": args.project}
    return {"run_ids": args.runs or [], "failed": args.failed, "below": args.below}


def cmd_export(args: argparse.Namespace) -> int:
    settings = Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None)
    kind = KIND[args.export_kind]
    try:
        params = parse_options(kind, _options(args), settings.integrations)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = Store(settings.db_path, url=settings.database_url)
    try:
        row = store.write_sync(insert_export, kind, params, "cli")
        store.write_sync(update_export, row["id"], status="running", started_at=time.time())

        def progress(fraction: float, stage: str) -> None:
            store.write_sync(update_export, row["id"], progress=fraction, stage=stage)
            print(f"[{fraction * 100:3.0f}%] {stage}", file=sys.stderr)

        try:
            result = run_export(
                store, row["id"], kind, params, settings.integrations, settings.data_dir, progress
            )
        except Exception as exc:  # noqa: BLE001 - shown, and recorded on the export row
            store.write_sync(
                update_export, row["id"], status="failed", error=str(exc), finished_at=time.time()
            )
            print(f"export failed: {exc}", file=sys.stderr)
            return 1
        store.write_sync(
            update_export,
            row["id"],
            status="succeeded",
            progress=1.0,
            stage="done",
            result=result,
            finished_at=time.time(),
        )
    finally:
        store.close()
    if kind == "finetune_jsonl":
        if args.out:
            shutil.copy(result["path"], args.out)
        print(
            f"{result['examples']} example(s) from {result['considered']} run(s), "
            f"{result['corrected']} corrected → {args.out or result['path']}"
        )
        for run_id, reason in result["skipped"].items():
            print(f"  skipped {run_id}: {reason}")
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0
