"""Optional extras: without one, its tool and its export say which extra to install,
and the studio imports and serves with none of them installed.

A module is made absent the way Python itself knows it: ``sys.modules[name] =
None`` makes ``import name`` raise ImportError, for this process only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from agents.extras import MissingExtra, require
from agents.tools import load_tool
from tests.conftest import MISTRAL_MODEL, csrf, free_port, wait_for_run
from tests.fake_mistral import Reply
from tests.receivers import wait_until

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = ("wandb", "huggingface_hub", "pyarrow", "elevenlabs")


def finished_export(client, export_id: int) -> dict:
    def done() -> dict | None:
        export = client.get(f"/api/exports/{export_id}").json()
        return export if export["status"] in ("succeeded", "failed") else None

    return wait_until(done, 60, f"export {export_id}")


def test_require_names_the_extra_and_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingExtra) as caught:
        require("wandb", "wandb")
    assert str(caught.value) == (
        "W&B support needs the 'wandb' extra (wandb is not installed):"
        " pip install 'agentop-studio[wandb]'"
    )
    assert require("json", "wandb") is json  # present modules come back as they are


def test_a_tool_without_its_extra_tells_the_model_and_the_run(client, fake_mistral, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    fake_mistral.add(
        Reply(
            tool_calls=[
                {
                    "id": "call0wand",
                    "name": "wandb_log",
                    "arguments": {"metrics": [{"name": "loss", "value": 0.5}]},
                }
            ]
        ),
        Reply(text="W&B is not installed here.", usage=(40, 6)),
    )
    r = client.post(
        "/api/runs",
        json={"prompt": "log loss 0.5", "model": MISTRAL_MODEL, "tools": ["wandb_log"]},
    )
    assert r.status_code == 201, r.text
    detail = wait_for_run(client, r.json()["run_id"])
    assert detail["run"]["status"] == "succeeded"
    [call] = detail["tool_calls"]
    assert call["status"] == "error"
    assert "pip install 'agentop-studio[wandb]'" in call["error"]
    # The model got the same words as the tool's result, and could pass them on.
    tool_message = fake_mistral.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "the 'wandb' extra" in tool_message["content"]


@pytest.mark.parametrize(
    "tool,arguments,module,extra",
    [
        ("hf_list_models", {"search": "smol"}, "huggingface_hub", "hf"),
        ("elevenlabs_speak", {"text": "hi"}, "elevenlabs", "elevenlabs"),
    ],
)
def test_the_other_tools_name_their_extra(tool, arguments, module, extra, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    run = load_tool(tool, {"data_dir": str(tmp_path), "api_key": "k", "timeout": 5})
    with pytest.raises(MissingExtra, match=rf"pip install 'agentop-studio\[{extra}\]'"):
        run(arguments)


def test_hf_export_without_pyarrow_fails_saying_which_extra(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    r = client.post("/api/exports", json={"kind": "huggingface", "format": "jsonl", "push": False})
    assert r.status_code == 202, r.text
    export = finished_export(client, r.json()["export_id"])
    assert export["status"] == "failed"
    assert "Hugging Face support needs the 'hf' extra" in export["error"]
    assert "pip install 'agentop-studio[hf]'" in export["error"]


def test_wandb_export_without_wandb_shows_the_extra_on_the_page(page_client, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    r = page_client.post(
        "/exports",
        data={"kind": "wandb", "_csrf_token": csrf(page_client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    [export] = page_client.get("/api/exports").json()["exports"]
    assert finished_export(page_client, export["id"])["status"] == "failed"
    page = page_client.get("/exports").text
    assert "pip install &#39;agentop-studio[wandb]&#39;" in page


BLOCKED_SERVE = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {blocked!r}


class Absent(MetaPathFinder):
    # As if the extras were never installed: every import of them fails.
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Absent())
from app.cli import main

sys.exit(main(["serve", "--port", "{port}", "--data-dir", {data_dir!r}]))
"""


def test_the_studio_serves_without_any_extra(tmp_path):
    port = free_port()
    script = tmp_path / "serve_bare.py"
    script.write_text(
        BLOCKED_SERVE.format(blocked=set(OPTIONAL), port=port, data_dir=str(tmp_path / "data"))
    )
    server = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this tree, as pytest imports it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    assert json.load(r) == {"status": "ok"}
                    return True
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                return False

        wait_until(up, 60, "the server to come up")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
            assert "Log in" in r.read().decode()
    finally:
        server.terminate()
        out = server.communicate(timeout=20)[0]
    assert "Traceback" not in out, out
