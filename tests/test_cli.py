"""The agentop command, run as a user runs it (a subprocess), against loopback only."""

import os
import subprocess
import sys

from tests.fake_mistral import Reply

AGENTOP = [sys.executable, "-m", "app.cli"]


def run_cli(*args, env_extra=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISTRAL_", "AGENTOP_"))}
    env.update(env_extra or {})
    return subprocess.run(
        [*AGENTOP, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_keys_create_list_revoke(tmp_path):
    d = str(tmp_path)
    r = run_cli("keys", "create", "alice", "--role", "viewer", "--data-dir", d)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip().splitlines()[-1]
    assert secret.startswith("ao_")
    r = run_cli("keys", "list", "--data-dir", d)
    assert "alice" in r.stdout and "viewer" in r.stdout and "active" in r.stdout
    assert secret not in r.stdout and secret[:11] in r.stdout
    assert run_cli("keys", "create", "alice", "--data-dir", d).returncode == 2
    assert run_cli("keys", "revoke", "alice", "--data-dir", d).returncode == 0
    assert "revoked" in run_cli("keys", "list", "--data-dir", d).stdout
    r = run_cli("keys", "revoke", "bob", "--data-dir", d)
    assert r.returncode == 2 and "no key named 'bob'" in r.stderr


def test_no_auth_refuses_a_public_address(tmp_path):
    r = run_cli("serve", "--host", "0.0.0.0", "--no-auth", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "loopback" in r.stderr


def test_run_streams_to_the_terminal_and_is_recorded(tmp_path, fake_mistral):
    fake_mistral.add(Reply(text="Paris, of course.", chunk_size=3))
    env = {
        "MISTRAL_API_KEY": "k",
        "MISTRAL_SERVER_URL": fake_mistral.url,
        "AGENTOP_DATA_DIR": str(tmp_path),
    }
    r = run_cli(
        "run",
        "Capital of France?",
        "--model",
        "mistral-small-latest",
        "--temperature",
        "0.3",
        "--system",
        "Be brief.",
        env_extra=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Paris, of course."
    assert "[succeeded]" in r.stderr and "mistral-small-latest" in r.stderr
    body = fake_mistral.requests[0]
    assert body["temperature"] == 0.3 and body["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }
    # Recorded like a web run: the same store holds it.
    from app.store import Store
    from app.store.runs import list_runs

    store = Store(tmp_path / "agentop.db")
    [run] = store.read_sync(list_runs)
    store.close()
    assert run["source"] == "cli" and run["response"] == "Paris, of course."


def test_run_reports_bad_input(tmp_path):
    r = run_cli("run", "hi", "--model", "no-such-model", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "unknown model" in r.stderr


def _mistral_env(fake_mistral, tmp_path):
    return {
        "MISTRAL_API_KEY": "k",
        "MISTRAL_SERVER_URL": fake_mistral.url,
        "AGENTOP_DATA_DIR": str(tmp_path),
    }


def test_run_tools_option_picks_the_tools_offered(tmp_path, fake_mistral):
    env = _mistral_env(fake_mistral, tmp_path)
    r = run_cli("run", "hi", "--tools", "hf_list_models,wandb_log", env_extra=env)
    assert r.returncode == 0, r.stderr
    offered = [t["function"]["name"] for t in fake_mistral.requests[-1]["tools"]]
    assert offered == ["hf_list_models", "wandb_log"]
    r = run_cli("run", "hi", "--tools", "none", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert not fake_mistral.requests[-1].get("tools")
    r = run_cli("run", "hi", "--tools", "nope", env_extra=env)
    assert r.returncode == 2 and "unknown tool(s): nope" in r.stderr


def test_run_prints_no_third_party_banner(tmp_path, fake_mistral):
    """wandb's "Install Weave" hint (and any wandb: line) stays out of the terminal."""
    metrics = {"metrics": [{"name": "loss", "value": 0.5}]}
    fake_mistral.add(Reply(tool_calls=[{"name": "wandb_log", "arguments": metrics}]))
    fake_mistral.add(Reply(text="Logged."))
    # As a user's shell has it: none of wandb's own switches set (conftest sets some).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISTRAL_", "AGENTOP_"))}
    env = {k: v for k, v in env.items() if not k.startswith("WANDB_")}
    env.update(_mistral_env(fake_mistral, tmp_path), WANDB_MODE="offline")
    r = subprocess.run(
        [*AGENTOP, "run", "log a loss of 0.5", "--tools", "wandb_log"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert "✓ wandb_log" in r.stdout  # the tool did run
    output = r.stdout + r.stderr
    assert "Weave" not in output and "wandb:" not in output, output
