"""Which client started a run through the JSON API: the run's ``source``.

``agentop run`` and ``agentop replay`` hand their runs to a server beside
them and say so with ``X-AgentOp-Client: cli``; such runs are recorded as
``cli``, like the ones the CLI runs in-process. Any other client is ``api``.
"""

from __future__ import annotations

from litestar import Request

CLIENT_HEADER = "X-AgentOp-Client"
CLIENT_SOURCES = frozenset({"cli"})


def run_source(request: Request) -> str:
    client = request.headers.get(CLIENT_HEADER, "").strip().lower()
    return client if client in CLIENT_SOURCES else "api"
