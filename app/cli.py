"""The ``agentop`` command: serve the studio, or run an agent from the terminal.

``agentop run`` streams the run to the terminal as it happens. With a server
up on the same data, the run goes through the server's API (so it is watched
live, alerted on and logged like any web run); without one, it runs here,
recorded exactly as the web does (same store, same recorder). See
``app.runs.remote``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from agents.config import ConfigError
from app.auth.keys import (
    ROLES,
    KeyError_,
    count_active_keys,
    create_key,
    list_keys,
    revoke_key,
    set_role,
)
from app.auth.proxies import uvicorn_proxy_options
from app.core.errors import InputError
from app.core.formats import format_ts
from app.core.settings import Settings, SettingsError
from app.database.cli import add_parser as add_database_parser
from app.exports.cli import add_parser as add_export_parser
from app.ingest.grpc_server import check_port
from app.replay.cli import add_parser as add_replay_parser
from app.runs.input import parse_run_input, tools_from_text
from app.runs.remote import RemoteError, cli_process, credential, find_server, start_and_follow
from app.runs.remote import client as remote_client
from app.runs.runner import Runner
from app.runs.terminal import print_event, print_final
from app.store import Store
from app.store.backend import MIGRATION_LOCK, is_postgres
from app.store.live import Broker, follow_run
from app.store.runs import get_run
from app.store.statuses import SUCCEEDED


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _local_url(host: str, port: int) -> str:
    """Where a CLI on this host reaches a server bound to ``host`` (any-address = loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _first_admin_key(settings: Settings, url: str) -> None:
    """On a fresh install, make an admin key and show it once, so a newcomer can log in.

    Counted and created in one write transaction, under the migrations'
    advisory lock on PostgreSQL: replicas starting together on an empty
    database make one key, not one each.
    """

    def create_first(db: Any) -> str | None:
        if is_postgres(db):
            db.execute("select pg_advisory_xact_lock(?)", [MIGRATION_LOCK])  # until the commit
        if count_active_keys(db):
            return None
        return create_key(db, f"admin-{int(time.time())}", "admin")[1]

    store = Store(settings.db_path, url=settings.database_url)
    try:
        secret = store.write_sync(create_first)
        if secret is not None:
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

    settings = _settings(args)
    # Loaded now, not when the app starts: a bad agent setting stops serve with one line.
    settings.agents()
    url = f"http://{args.host}:{args.port}"
    if args.no_auth and args.host not in LOOPBACK:
        print("error: --no-auth is only allowed on a loopback address (127.0.0.1)", file=sys.stderr)
        return 2
    settings.host = args.host
    # A busy OTLP/gRPC port too (uvicorn would print a traceback), before a first key is shown.
    check_port(settings)
    if args.no_auth:
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
    settings.server_url = _local_url(args.host, args.port)
    # Imported here, not at the top: the web app (every page and handler) costs
    # about 0.4 s to import, which `agentop run`, `replay` and `keys` never need.
    # Not a cycle: app.main imports nothing of the CLI.
    from app.main import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=5,
        # X-Forwarded-* only from AGENTOP_TRUSTED_PROXIES (uvicorn alone would trust 127.0.0.1).
        **uvicorn_proxy_options(settings.trusted_proxies),
    )
    return 0


async def _run(args: argparse.Namespace) -> int:
    data = {
        "prompt": args.prompt,
        "model": args.model,
        "temperature": args.temperature,
        "system_prompt": args.system,
        "session": args.session,
        "max_tokens": args.max_tokens,
        # Not given: the model's default tools (none for the small local model).
        "tools": tools_from_text(args.tools) if args.tools is not None else None,
    }
    body = {k: v for k, v in data.items() if v is not None}
    settings = _settings(args)
    async with cli_process(settings) as (store, process):
        server = await find_server(store)
        if server is not None:
            code = await _run_on_server(server["url"], store, process.id, body)
            if code is not None:
                return code
        return await _run_here(settings, store, process.id, body)


async def _run_on_server(url: str, store: Store, process_id: str, body: dict) -> int | None:
    """Start the run on the server and stream it here; None if the server did not answer."""
    async with credential(store, process_id) as key, remote_client(url, key) as http:
        try:
            started = await start_and_follow(
                http, "/api/runs", body, lambda run: f"run {run['id']}"
            )
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    if started is None:
        print(f"note: the server at {url} did not answer; running here", file=sys.stderr)
        return None
    print_final(started.final, sys.stderr)
    return 0 if started.final["status"] == SUCCEEDED else 1


async def _run_here(settings: Settings, store: Store, process_id: str, body: dict) -> int:
    """No server beside us: run the agent in this process, as its registered owner."""
    broker = Broker()
    runner = Runner(store, broker, settings.agents(), settings.data_dir, owner=process_id)
    try:
        run_input = parse_run_input(body, runner.config, runner.tool_names)
        run = await runner.start(run_input, source="cli")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run {run['id']} · {run['model']} ({run['provider']})", file=sys.stderr)
    try:
        async for event in follow_run(store, broker, run["id"]):
            if event is not None:
                print_event(event.type, event.payload, sys.stdout)
        await runner.wait(run["id"])
    finally:
        await runner.shutdown()
    final = await store.read(get_run, run["id"])
    assert final is not None
    print_final(final, sys.stderr)
    return 0 if final["status"] == SUCCEEDED else 1


def cmd_keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = Store(settings.db_path, url=settings.database_url)
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
        elif args.keys_command == "role":
            row = store.write_sync(set_role, args.name, args.role)
            print(f"key {row['name']!r} is now {row['role']}")
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
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once (never the last admin)")
    revoke.add_argument("name")
    role = keys_sub.add_parser("role", help="change a key's role (never demote the last admin)")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    for p in (create, keys_sub.choices["list"], revoke, role):
        p.add_argument("--data-dir")
    keys.set_defaults(func=cmd_keys)

    run = sub.add_parser("run", help="run the agent on a prompt and stream it here")
    run.add_argument("prompt")
    run.add_argument("--model")
    run.add_argument("--temperature", type=float)
    run.add_argument("--system", help="system prompt")
    run.add_argument("--session", help="group the run into this session")
    run.add_argument("--max-tokens", type=int)
    run.add_argument(
        "--tools",
        help='comma-separated tool names ("none" for none); default: the model\'s default tools',
    )
    run.add_argument("--data-dir")
    run.set_defaults(func=lambda a: asyncio.run(_run(a)))

    add_export_parser(sub)
    add_database_parser(sub)

    add_replay_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SettingsError, ConfigError) as exc:
        # A bad setting: one line saying which and why, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # the shell's code for Ctrl-C, without a traceback


if __name__ == "__main__":
    raise SystemExit(main())
