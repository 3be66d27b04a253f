"""Mistral's files and fine-tuning APIs, plugged into the shared fake Mistral server.

``FakeFineTuning(fake_mistral)`` answers ``POST /v1/files`` (multipart, the
SDK's ``files.upload``; every line of a fine-tune file is checked like the
real service checks it), ``POST /v1/fine_tuning/jobs`` and ``GET
/v1/fine_tuning/jobs/{id}``. A job moves QUEUED → RUNNING → SUCCESS (or
``final_status``) over successive polls and then names its fine-tuned model.
``fail_uploads`` answers the first uploads with 503, for the retry path.
"""

from __future__ import annotations

import email
import json
import time
import uuid
from typing import Any

from app.exports.finetune_jsonl import validate_line
from tests.fake_mistral import FakeMistral


class FakeFineTuning:
    def __init__(
        self,
        fake: FakeMistral,
        polls: int = 2,
        final_status: str = "SUCCESS",
        fail_uploads: int = 0,
    ) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls, self.final_status, self.fail_uploads = polls, final_status, fail_uploads
        self.uploads = 0
        fake.routes.append(self.route)

    def route(self, handler: Any, method: str, path: str, raw: bytes) -> bool:
        path = path.split("?")[0].rstrip("/")
        if not path.startswith(("/v1/files", "/v1/fine_tuning/jobs")):
            return False
        if not handler.headers.get("Authorization", "").startswith("Bearer "):
            handler._send_json(401, {"message": "Unauthorized"}, {})
        elif method == "POST" and path == "/v1/files":
            self._upload(handler, raw)
        elif method == "POST" and path == "/v1/fine_tuning/jobs":
            self._create(handler, json.loads(raw))
        elif method == "GET" and path.startswith("/v1/fine_tuning/jobs/"):
            self._get(handler, path.rsplit("/", 1)[1])
        else:
            handler._send_json(404, {"message": f"no route {path}"}, {})
        return True

    def _upload(self, handler: Any, raw: bytes) -> None:
        self.uploads += 1
        if self.uploads <= self.fail_uploads:
            handler._send_json(503, {"message": "service unavailable"}, {})
            return
        content_type = handler.headers["Content-Type"]
        message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields: dict[str, Any] = {}
        for part in message.get_payload():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, content = fields["file"]
        purpose = fields.get("purpose", (None, b""))[1].decode()
        lines = content.decode().splitlines()
        for number, line in enumerate(lines, 1):
            problems = validate_line(json.loads(line))
            if problems:
                handler._send_json(422, {"message": f"line {number}: {problems}"}, {})
                return
        file_id = str(uuid.uuid4())
        self.files[file_id] = {"filename": filename, "purpose": purpose, "lines": lines}
        handler._send_json(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "sample_type": "instruct",
                "source": "upload",
                "num_lines": len(lines),
            },
            {},
        )

    def _create(self, handler: Any, body: dict[str, Any]) -> None:
        files = [f["file_id"] for f in body.get("training_files") or []]
        if not files or any(f not in self.files for f in files):
            handler._send_json(422, {"message": "unknown training file"}, {})
            return
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = {
            "id": job_id,
            "object": "job",
            "model": body["model"],
            "status": "QUEUED",
            "job_type": "completion",
            "created_at": int(time.time()),
            "modified_at": int(time.time()),
            "training_files": files,
            "hyperparameters": body.get("hyperparameters"),
            "suffix": body.get("suffix"),
            "auto_start": body.get("auto_start"),
            "fine_tuned_model": None,
            "polls": 0,
        }
        handler._send_json(200, self._public(self.jobs[job_id]), {})

    def _get(self, handler: Any, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            handler._send_json(404, {"message": "no such job"}, {})
            return
        job["polls"] += 1
        if job["polls"] >= self.polls:
            job["status"] = self.final_status
            if self.final_status == "SUCCESS":
                job["fine_tuned_model"] = f"ft:{job['model']}:abc12345:20261125:{job['suffix']}"
        elif job["polls"] >= 1:
            job["status"] = "RUNNING"
        handler._send_json(200, self._public(job), {})

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k != "polls"}
