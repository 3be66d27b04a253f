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

from app.costs import format_cost
from app.live import Broker, follow_run
from app.runs import InputError, Runner, parse_run_input
from app.settings import Settings
from app.store import Store
from app.store.events import interrupt_unfinished
from app.store.runs import get_run


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = _settings(args)
    print(f"AgentOp-Studio on http://{args.host}:{args.port}  (data: {settings.data_dir})")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )
    return 0


def _print_event(event_type: str, payload: dict, out) -> None:  # type: ignore[no-untyped-def]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentop", description="AgentOp-Studio")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the studio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", help="where the SQLite database lives (default ./data)")
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser("run", help="run the agent on a prompt and stream it here")
    run.add_argument("prompt")
    run.add_argument("--model")
    run.add_argument("--temperature", type=float)
    run.add_argument("--system", help="system prompt")
    run.add_argument("--session", help="group the run into this session")
    run.add_argument("--max-tokens", type=int)
    run.add_argument("--data-dir")
    run.set_defaults(func=lambda a: asyncio.run(_run(a)))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
