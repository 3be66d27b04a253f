"""The ``agentop`` command: serve the studio, or run an agent from the terminal.

``agentop run`` records the run exactly as the web does (same store, same
recorder), so it shows up in the studio afterwards, and streams it to the
terminal as it happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from app.auth.keys import ROLES, KeyError_, count_active_keys, create_key, list_keys, revoke_key
from app.costs import format_cost
from app.live import Broker, follow_run
from app.render import format_ts
from app.runs import InputError, Runner, parse_run_input
from app.settings import Settings
from app.store import Store
from app.store.events import interrupt_unfinished
from app.store.runs import get_run


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _first_admin_key(settings: Settings, url: str) -> None:
    """On a fresh install, make an admin key and show it once, so a newcomer can log in."""
    store = Store(settings.db_path)
    try:
        if store.read_sync(count_active_keys) == 0:
            _, secret = store.write_sync(create_key, f"admin-{int(time.time())}", "admin")
            bar = "=" * 72
            print(
                f"{bar}\nNo API key existed, so an admin key was created. It is shown once:\n\n"
                f"    {secret}\n\nLog in at {url}/login with it, or send it as X-API-Key.\n{bar}",
                flush=True,
            )
    finally:
        store.close()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = _settings(args)
    url = f"http://{args.host}:{args.port}"
    if args.no_auth:
        if args.host not in LOOPBACK:
            print(
                "error: --no-auth is only allowed on a loopback address (127.0.0.1)",
                file=sys.stderr,
            )
            return 2
        settings.auth = False
        print(
            "!" * 72
            + "\nWARNING: --no-auth: anyone who can reach this port is an admin.\n"
            + "!" * 72,
            file=sys.stderr,
            flush=True,
        )
    else:
        _first_admin_key(settings, url)
    print(f"AgentOp-Studio on {url}  (data: {settings.data_dir})", flush=True)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )
    return 0


def _print_event(event_type: str, payload: dict[str, Any], out: TextIO) -> None:
    if event_type == "token":
        out.write(payload["text"])
        out.flush()
    elif event_type == "tool_call_started":
        out.write(f"\n→ {payload['name']}({json.dumps(payload['arguments'])})\n")
    elif event_type == "tool_call_finished":
        if payload.get("error"):
            out.write(f"  ✗ {payload['name']} failed: {payload['error']}\n")
        else:
            out.write(f"  ✓ {payload['name']} ({payload['latency_ms']:.0f} ms)\n")
    elif event_type == "run_failed":
        out.write(f"\nrun failed: {payload['error']}\n")


async def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = Store(settings.db_path)
    store.write_sync(interrupt_unfinished, time.time())
    broker = Broker()
    runner = Runner(store, broker, settings.agents(), settings.data_dir)
    data = {
        "prompt": args.prompt,
        "model": args.model,
        "temperature": args.temperature,
        "system_prompt": args.system,
        "session": args.session,
        "max_tokens": args.max_tokens,
    }
    try:
        run_input = parse_run_input(
            {k: v for k, v in data.items() if v is not None}, runner.config, runner.tool_names
        )
        run = await runner.start(run_input, source="cli")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        store.close()
        return 2
    out = sys.stdout
    print(f"run {run['id']} · {run['model']} ({run['provider']})", file=sys.stderr)
    try:
        async for event in follow_run(store, broker, run["id"]):
            if event is not None:
                _print_event(event.type, event.payload, out)
        await runner.wait(run["id"])
    finally:
        await runner.shutdown()
    final = await store.read(get_run, run["id"])
    store.close()
    assert final is not None
    print(
        f"\n[{final['status']}] tokens {final['input_tokens']}/{final['output_tokens']} · "
        f"cost {format_cost(final['cost_usd'], final['cost_status'])} · "
        f"{(final['latency_ms'] or 0):.0f} ms · run id {final['id']}",
        file=sys.stderr,
    )
    return 0 if final["status"] == "succeeded" else 1


def cmd_keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = Store(settings.db_path)
    try:
        if args.keys_command == "create":
            row, secret = store.write_sync(create_key, args.name, args.role)
            print(f"created {row['role']} key {row['name']!r}; it is shown once:")
            print(secret)
        elif args.keys_command == "list":
            rows = store.read_sync(list_keys)
            print(f"{'NAME':24} {'ROLE':7} {'PREFIX':12} {'CREATED':20} {'LAST USED':20} STATE")
            for r in rows:
                state = "revoked" if r["revoked_at"] else "active"
                print(
                    f"{r['name'][:24]:24} {r['role']:7} {r['prefix'] + '…':12} "
                    f"{format_ts(r['created_at']):20} {format_ts(r['last_used_at']):20} {state}"
                )
        elif args.keys_command == "revoke":
            row = store.write_sync(revoke_key, args.name)
            print(f"revoked key {row['name']!r}")
    except KeyError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentop", description="AgentOp-Studio")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the studio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", help="where the SQLite database lives (default ./data)")
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="no login at all (only allowed when binding to a loopback address)",
    )
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, default="member")
    keys_sub.add_parser("list", help="list keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("name")
    for p in (create, keys_sub.choices["list"], revoke):
        p.add_argument("--data-dir")
    keys.set_defaults(func=cmd_keys)

    run = sub.add_parser("run", help="run the agent on a prompt and stream it here")
    run.add_argument("prompt")
    run.add_argument("--model")
    run.add_argument("--temperature", type=float)
    run.add_argument("--system", help="system prompt")
    run.add_argument("--session", help="group the run into this session")
    run.add_argument("--max-tokens", type=int)
    run.add_argument("--data-dir")
    run.set_defaults(func=lambda a: asyncio.run(_run(a)))

    from app.exports.cli import add_parser as add_export_parser

    add_export_parser(sub)

    from app.replay_cli import add_parser as add_replay_parser

    add_replay_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
