"""The studio for a benchmark: the real app under uvicorn in a child process, on loopback.

``with studio_server(data_dir) as url:`` starts it on a free 127.0.0.1 port
(spawned, so the benchmark's own imports and threads stay out of it), waits
until ``/api/health`` answers, and stops it at the end of the block.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data_dir: str, port: int, unset: tuple[str, ...] = ()) -> None:
    """Child process: the app on ``data_dir``, without the environment variables ``unset``."""
    for name in unset:
        os.environ.pop(name, None)
    # Benchmarks that measure gRPC choose its port; the others leave 4317 alone.
    os.environ.setdefault("AGENTOP_OTLP_GRPC_PORT", "0")

    import uvicorn

    from app.core.settings import Settings
    from app.main import create_app

    logging.disable(logging.WARNING)
    settings = Settings(data_dir=Path(data_dir))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="error")


def start_studio(
    data_dir: Path, unset: tuple[str, ...] = (), start_timeout_s: float = 60.0
) -> tuple[BaseProcess, str]:
    """Start a studio serving ``data_dir`` in a child process; its process and URL once
    it answers ``/api/health``."""
    port = free_port()
    server = mp.get_context("spawn").Process(
        target=serve, args=(str(data_dir), port, unset), daemon=True
    )
    server.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout_s
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.terminate()
            raise SystemExit("server did not start")
        time.sleep(0.1)


@contextmanager
def studio_server(
    data_dir: Path, unset: tuple[str, ...] = (), start_timeout_s: float = 60.0
) -> Iterator[str]:
    """The URL of a studio serving ``data_dir`` for the duration of the block."""
    server, url = start_studio(data_dir, unset, start_timeout_s)
    try:
        yield url
    finally:
        server.terminate()
        server.join(timeout=15)
