"""``agentop replay RUN_ID [--model --temperature --max-tokens --system --tools --session]``.

Replays a recorded run with overrides, streams the replay to the terminal as
``agentop run`` does, then prints the diff's summary and id (the studio
shows it at ``/diffs/{id}``). Like ``agentop run``, it goes through the
server when one serves the same data, else it runs here with the same store
and recorder: the replay and its diff appear in the studio like any other.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from app.core.errors import InputError
from app.core.settings import Settings
from app.replay.replays import RunNotFound, ensure_diff, start_replay
from app.runs.input import tools_from_text
from app.runs.remote import (
    RemoteError,
    call,
    cli_process,
    credential,
    find_server,
    start_and_follow,
)
from app.runs.remote import client as remote_client
from app.runs.runner import Runner
from app.runs.terminal import print_event, print_final
from app.store import Store
from app.store.live import Broker, follow_run
from app.store.runs import get_run
from app.store.statuses import SUCCEEDED


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay", help="replay a recorded run with overrides and print the diff"
    )
    replay.add_argument("run_id")
    replay.add_argument("--model")
    replay.add_argument("--temperature", type=float)
    replay.add_argument("--max-tokens", type=int)
    replay.add_argument("--max-rounds", type=int)
    replay.add_argument("--system", help='system prompt ("" for none)')
    replay.add_argument(
        "--tools",
        help='comma-separated tool names ("none" or "" for none); default: as the run had',
    )
    replay.add_argument("--session", help='session name ("" for none)')
    replay.add_argument("--data-dir")
    replay.set_defaults(func=lambda a: asyncio.run(cmd_replay(a)))


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "model": args.model,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "max_rounds": args.max_rounds,
        "system_prompt": args.system,
        "session": args.session,
    }
    if args.tools is not None:
        overrides["tools"] = tools_from_text(args.tools)
    return {k: v for k, v in overrides.items() if v is not None}


def _signed(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:+,.0f}{unit}"


def print_summary(diff: dict[str, Any], out: Any) -> None:
    data = diff.get("data") or {}
    if diff["status"] != "ready":
        print(f"diff {diff['id']}: pending (a run has not ended)", file=out)
        return
    answer = data["answer"]
    metrics = {m["key"]: m for m in data["metrics"]}
    counts = data["tool_call_counts"]
    changed = [p["key"] for p in data["params"] if p["changed"]]
    print(f"diff {diff['id']}: " + ("identical" if data["identical"] else "differs"), file=out)
    print(f"  settings changed  {', '.join(changed) or 'none'}", file=out)
    print(
        f"  answer            {answer['similarity'] * 100:.1f}% similar, "
        f"+{answer['words_added']} / -{answer['words_removed']} words",
        file=out,
    )
    print(
        f"  tool calls        {counts['changed']} changed, {counts['added']} added, "
        f"{counts['removed']} removed",
        file=out,
    )
    print(
        f"  tokens            {_signed(metrics['total_tokens']['delta'])}   latency "
        f"{_signed(metrics['latency_ms']['delta'], ' ms')}   status {data['status']['a']} → "
        f"{data['status']['b']}",
        file=out,
    )
    print(f"  see /diffs/{diff['id']} in the studio", file=out)


async def cmd_replay(args: argparse.Namespace) -> int:
    settings = Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None)
    overrides = overrides_from_args(args)
    async with cli_process(settings) as (store, process):
        server = await find_server(store)
        if server is not None:
            code = await _replay_on_server(server["url"], store, process.id, args.run_id, overrides)
            if code is not None:
                return code
        return await _replay_here(settings, store, process.id, args.run_id, overrides)


async def _replay_on_server(
    url: str, store: Store, process_id: str, run_id: str, overrides: dict[str, Any]
) -> int | None:
    """Replay through the server and stream it here; None if the server did not answer."""
    async with credential(store, process_id) as key, remote_client(url, key) as http:
        try:
            started = await start_and_follow(
                http,
                f"/api/runs/{run_id}/replay",
                overrides,
                lambda run: f"replay {run['id']} of {run_id}",
            )
            if started is not None:
                diff = await call(http, "GET", f"/api/diffs/{started.created['diff_id']}")
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    if started is None:
        print(f"note: the server at {url} did not answer; replaying here", file=sys.stderr)
        return None
    print_final(started.final, sys.stderr)
    print_summary(diff, sys.stderr)
    return 0 if started.final["status"] == SUCCEEDED else 1


async def _replay_here(
    settings: Settings, store: Store, process_id: str, run_id: str, overrides: dict[str, Any]
) -> int:
    """No server beside us: replay in this process, as its registered owner."""
    broker = Broker()
    runner = Runner(store, broker, settings.agents(), settings.data_dir, owner=process_id)
    try:
        try:
            run, diff_id = await start_replay(runner, run_id, overrides, "cli")
        except (InputError, RunNotFound) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"replay {run['id']} of {run_id} · {run['model']} ({run['provider']})",
            file=sys.stderr,
        )
        async for event in follow_run(store, broker, run["id"]):
            if event is not None:
                print_event(event.type, event.payload, sys.stdout)
        await runner.wait(run["id"])
        final = await store.read(get_run, run["id"])
        diff = await ensure_diff(store, diff_id)
        assert final is not None and diff is not None
        print_final(final, sys.stderr)
        print_summary(diff, sys.stderr)
        return 0 if final["status"] == SUCCEEDED else 1
    finally:
        await runner.shutdown()
