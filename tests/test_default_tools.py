"""Default tools per model: a run that names no tools gets its model's defaults.

The shipped config gives the small local model none (it calls tools at random
otherwise); other models get every tool. Here the fake Mistral's default model
stands in for a model with no default tools, so runs stay fast and offline.
"""

import textwrap

import pytest
from bs4 import BeautifulSoup

from agents.config import ConfigError, load_config
from app.core.settings import Settings
from app.replay.replays import replay_input
from app.runs.input import parse_run_input, tools_from_text
from tests.conftest import MISTRAL_MODEL, agent_config, csrf, wait_for_run
from tests.fake_mistral import Reply

OTHER_MODEL = "mistral-large-latest"  # no default tools: every tool
ALL_TOOLS = ["wandb_log", "hf_list_models", "elevenlabs_speak"]


@pytest.fixture
def settings(data_dir, fake_mistral):
    config = agent_config(fake_mistral.url, default_tools={MISTRAL_MODEL: ()})
    return Settings(data_dir=data_dir, agent_config=config)


def soup(response):
    return BeautifulSoup(response.text, "html.parser")


def ticked(page):
    return [box["value"] for box in page.select("#run-tools input[name=tools][checked]")]


# --- config -------------------------------------------------------------------------


def test_shipped_config_gives_the_small_local_model_no_tools_by_default():
    config = load_config(env={"MISTRAL_API_KEY": "k"})
    assert config.tools_by_default("smollm2-135m") == ()
    assert config.tools_by_default("mistral-small-latest") is None  # every tool


def test_a_default_tool_that_is_not_configured_is_a_config_error(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text(
        textwrap.dedent(
            """
            local:
              models:
                - name: tiny
                  default_tools: [hf_list_models, nope]
            tools:
              hf_list_models: {}
            """
        )
    )
    with pytest.raises(ConfigError, match=r"local\.models\.0\.default_tools.*nope"):
        load_config(path, env={})


def test_a_local_model_may_default_to_some_tools(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text(
        "local:\n  models:\n    - name: tiny\n      default_tools: [hf_list_models]\n"
        "    - name: other\ntools:\n  hf_list_models: {}\n  wandb_log: {}\n"
    )
    config = load_config(path, env={})
    assert config.tools_by_default("tiny") == ("hf_list_models",)
    assert config.tools_by_default("other") is None
    assert [m.name for m in config.local_models] == ["tiny", "other"]


# --- input --------------------------------------------------------------------------


def test_no_tools_named_means_the_models_defaults(settings):
    config = settings.agents()
    named_none = parse_run_input({"prompt": "hi"}, config, ALL_TOOLS).request
    assert named_none.model == MISTRAL_MODEL and named_none.tools == ()
    other = parse_run_input({"prompt": "hi", "model": OTHER_MODEL}, config, ALL_TOOLS).request
    assert other.tools is None
    chosen = parse_run_input({"prompt": "hi", "tools": ["wandb_log"]}, config, ALL_TOOLS)
    assert chosen.request.tools == ("wandb_log",)


def test_cli_tool_lists():
    assert tools_from_text("a, b,") == ["a", "b"]
    assert tools_from_text("none") == [] and tools_from_text("") == []


# --- over HTTP ----------------------------------------------------------------------


def test_api_run_without_tools_offers_the_model_none(client, fake_mistral):
    fake_mistral.add(Reply(text="Paris."))
    run = client.post("/api/runs", json={"prompt": "What is the capital of France?"}).json()
    detail = wait_for_run(client, run["run_id"])
    assert detail["run"]["params"]["tools"] == []
    assert not fake_mistral.requests[-1].get("tools")


def test_api_run_naming_tools_still_gets_them(client, fake_mistral):
    fake_mistral.add(Reply(text="ok"))
    run = client.post("/api/runs", json={"prompt": "hi", "tools": ["hf_list_models"]}).json()
    wait_for_run(client, run["run_id"])
    offered = [t["function"]["name"] for t in fake_mistral.requests[-1]["tools"]]
    assert offered == ["hf_list_models"]


def test_form_ticks_the_models_default_tools(page_client):
    assert ticked(soup(page_client.get("/runs/new"))) == []
    # What htmx asks for when another model is picked: the fieldset for it.
    page = soup(page_client.get("/runs/new", params={"model": OTHER_MODEL}))
    assert ticked(page) == ALL_TOOLS
    fieldset = page.select_one("#run-tools")
    assert fieldset["hx-get"] == "/runs/new" and fieldset["hx-select"] == "#run-tools"
    assert fieldset.select_one("[name=tools_model]")["value"] == OTHER_MODEL


def _post_form(client, **fields):
    data = {"prompt": "hi", "tools_present": "1", "_csrf_token": csrf(client), **fields}
    r = client.post("/runs", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    return wait_for_run(client, r.headers["location"].rsplit("/", 1)[1])["run"]


def test_form_ticking_a_tool_uses_it(page_client, fake_mistral):
    run = _post_form(page_client, model=MISTRAL_MODEL, tools="wandb_log", tools_model=MISTRAL_MODEL)
    assert run["params"]["tools"] == ["wandb_log"]


def test_form_boxes_left_as_drawn_for_another_model_follow_the_model_picked(
    page_client, fake_mistral
):
    """Without JavaScript the boxes are not redrawn when the model changes."""
    run = _post_form(page_client, model=OTHER_MODEL, tools_model=MISTRAL_MODEL, tools_default="")
    assert run["params"]["tools"] is None  # every tool: that model's default
    run = _post_form(page_client, model=MISTRAL_MODEL, tools_model=MISTRAL_MODEL, tools_default="")
    assert run["params"]["tools"] == []
    # Changed by hand: the boxes win.
    run = _post_form(
        page_client,
        model=OTHER_MODEL,
        tools="hf_list_models",
        tools_model=MISTRAL_MODEL,
        tools_default="",
    )
    assert run["params"]["tools"] == ["hf_list_models"]


# --- replay -------------------------------------------------------------------------


def test_replay_keeps_the_tools_the_run_had(settings):
    config = settings.agents()
    parent = {
        "id": "p1",
        "prompt": "hi",
        "model": MISTRAL_MODEL,
        "params": {"tools": []},
        "session_id": None,
    }
    # No tools before, none after, even on a model whose default is every tool.
    again = replay_input(parent, {"model": OTHER_MODEL}, config, ALL_TOOLS)
    assert again.request.tools == ()
    some = {**parent, "params": {"tools": ["wandb_log"]}}
    assert replay_input(some, {}, config, ALL_TOOLS).request.tools == ("wandb_log",)
