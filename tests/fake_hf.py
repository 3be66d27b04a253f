"""A local HTTP server speaking the slice of the Hugging Face Hub API that ``upload_folder`` uses.

``HfApi(endpoint=fake.url)`` creates a dataset repo (``/api/repos/create``),
validates the card's YAML (``/api/validate-yaml``), asks how to upload each
file (``/preupload``: always "regular", so no LFS) and commits (``/commit``,
NDJSON with base64 file contents). Committed files land in ``repos``. The
first ``fail_creates`` repo creations answer 503 (huggingface_hub does not
retry that call itself, so the studio's own backoff is what gets tested).
"""

from __future__ import annotations

import base64
import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import LoopbackServer, send_json


class FakeHub(LoopbackServer):
    def __init__(self, fail_creates: int = 0) -> None:
        self.repos: dict[str, dict[str, Any]] = {}  # repo id -> {"private", "files": {path: bytes}}
        self.tokens: list[str] = []
        self.fail_creates = fail_creates
        self.creates = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, payload: Any) -> None:
                send_json(self, status, payload)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.tokens.append(self.headers.get("Authorization", ""))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    hub.creates += 1
                    if hub.creates <= hub.fail_creates:
                        self._json(503, {"error": "try again later"})
                        return
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'user'}/{req['name']}"
                    if repo in hub.repos:
                        self._json(409, {"error": "You already created this dataset repo"})
                        return
                    private = req.get("private", req.get("visibility") == "private")
                    hub.repos[repo] = {"private": private, "type": req.get("type"), "files": {}}
                    self._json(200, {"url": f"{hub.url}/datasets/{repo}"})
                elif path == "/api/validate-yaml":
                    self._json(200, {"errors": [], "warnings": []})
                elif "/preupload/" in path:
                    files = json.loads(body)["files"]
                    self._json(
                        200,
                        {
                            "files": [
                                {
                                    "path": f["path"],
                                    "uploadMode": "regular",
                                    "shouldIgnore": False,
                                    "oid": None,
                                }
                                for f in files
                            ]
                        },
                    )
                elif "/commit/" in path:
                    repo = path.split("/api/datasets/")[1].split("/commit/")[0]
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            value = item["value"]
                            hub.repos[repo]["files"][value["path"]] = base64.b64decode(
                                value["content"]
                            )
                    self._json(
                        200,
                        {
                            "commitUrl": f"{hub.url}/datasets/{repo}/commit/abc123",
                            "commitOid": "abc123",
                            "pullRequestUrl": None,
                        },
                    )
                else:
                    self._json(404, {"error": f"no route {path}"})

        super().__init__(Handler)
        self.start()
