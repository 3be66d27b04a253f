"""Agent config: ${ENV} interpolation and loading agents/config.yaml."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from agents.config import DEFAULT_CONFIG, ConfigError, interpolate, load_config
from agents.config import parse as parse_config


def parse(template: str, env: dict[str, str]):
    # References are replaced in the parsed values, so no value can change the YAML's shape.
    return parse_config(template, env)


# --- interpolate -------------------------------------------------------------


def test_plain_variable_is_replaced():
    assert interpolate("key: ${FOO}", {"FOO": "bar"}) == "key: bar"


def test_several_variables_on_one_line_and_in_a_string():
    text = "url: http://${HOST}:${PORT}/v1"
    assert parse(text, {"HOST": "127.0.0.1", "PORT": "8080"}) == {"url": "http://127.0.0.1:8080/v1"}


def test_default_used_when_unset_or_empty():
    assert parse("k: ${NOPE:-fallback}", {}) == {"k": "fallback"}
    assert parse("k: ${NOPE:-fallback}", {"NOPE": ""}) == {"k": "fallback"}
    assert parse("k: ${NOPE:-fallback}", {"NOPE": "set"}) == {"k": "set"}


def test_empty_default_gives_null():
    assert parse("k: ${NOPE:-}", {}) == {"k": None}


def test_types_are_kept_for_numbers_and_booleans():
    env = {"N": "42", "F": "0.5", "B": "false"}
    assert parse("n: ${N}\nf: ${F}\nb: ${B}\nd: ${D:-7}", env) == {
        "n": 42,
        "f": 0.5,
        "b": False,
        "d": 7,
    }


def test_missing_variable_raises_config_error_naming_it():
    with pytest.raises(ConfigError, match="MY_SECRET_VAR"):
        interpolate("a: 1\nkey: ${MY_SECRET_VAR}\n", {"OTHER": "x"})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_text_without_references_is_untouched():
    text = "a: $HOME\nb: $ {X}\nc: {x: 1}\n"
    assert interpolate(text, {}) == text
    assert parse(text, {}) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "value",
    [
        "a: b",
        "sk-123 # not a comment",
        "#starts-with-hash",
        "key: value # comment: too",
        "it's",
        '"quoted"',
        "[not, a, list]",
        "{not: a map}",
        "*alias",
        "&anchor",
        "!tag",
        "%percent",
        "|",
        ">",
        "a,b",
        "?",
        "back\\slash",
        "line one\nline two",
        "tab\there",
        "café",
        "hf_AbC123.def-ghi/jkl+mno",
        "user@example.com",
    ],
)
def test_values_with_yaml_syntax_stay_one_string(value):
    assert parse("key: ${V}\nnext: 1\n", {"V": value}) == {"key": value, "next": 1}


@pytest.mark.parametrize(
    "value",
    [
        "a: b",
        "x # y",
        "[x]",
    ],
)
def test_defaults_with_yaml_syntax_stay_one_string(value):
    # A default is part of the file, so YAML syntax in it is quoted like any YAML string.
    assert parse(f'key: "${{NOPE:-{value}}}"\n', {}) == {"key": value}


@pytest.mark.parametrize(
    "value",
    [
        "@token",
        "-",
        "~",
        "key-😀",
    ],
)
def test_edge_values_stay_the_same_string(value):
    try:
        loaded = parse("key: ${V}\n", {"V": value})
    except yaml.YAMLError as exc:  # pragma: no cover - the bug path
        pytest.fail(f"YAML error for {value!r}: {exc}")
    assert loaded == {"key": value}


# --- load_config -------------------------------------------------------------


def test_shipped_config_with_empty_env_uses_the_local_model():
    config = load_config(DEFAULT_CONFIG, env={})
    assert config.mistral.api_key == ""
    assert config.default_model == ""
    assert [m.name for m in config.local_models] == ["smollm2-135m"]
    assert config.resolved_default_model == "smollm2-135m"
    assert config.model_choices() == [("smollm2-135m", "local")]
    assert config.max_rounds == 4
    assert config.max_tokens == 512
    assert config.temperature == pytest.approx(0.7)
    assert config.mistral.models[0] == "mistral-small-latest"
    assert config.mistral.server_url == ""
    assert config.mistral.retry_initial_ms == 500
    assert config.mistral.timeout_ms == 120000
    local = config.local_models[0]
    assert local.gguf == "" and local.n_ctx == 4096 and local.weight_repack is False
    assert set(config.tools) == {"wandb_log", "hf_list_models", "elevenlabs_speak", "ask_agent"}
    assert config.tools["ask_agent"]["max_depth"] == 2
    assert config.tools["wandb_log"]["project"] == "agentop"
    assert config.tools["elevenlabs_speak"]["voice_id"] == "JBFqnCBsd6RMkjVDRZzb"
    assert not config.tools["hf_list_models"].get("token")


def test_default_load_uses_the_shipped_file():
    assert load_config(env={}) == load_config(DEFAULT_CONFIG, env={})


def test_mistral_key_makes_the_first_mistral_model_the_default():
    config = load_config(DEFAULT_CONFIG, env={"MISTRAL_API_KEY": "sk-test"})
    assert config.mistral.api_key == "sk-test"
    assert config.resolved_default_model == config.mistral.models[0] == "mistral-small-latest"
    choices = config.model_choices()
    assert ("smollm2-135m", "local") in choices
    assert ("mistral-small-latest", "mistral") in choices
    assert ("codestral-latest", "mistral") in choices


def test_explicit_default_model_wins():
    config = load_config(
        DEFAULT_CONFIG,
        env={"MISTRAL_API_KEY": "sk-test", "AGENTOP_DEFAULT_MODEL": "mistral-large-latest"},
    )
    assert config.resolved_default_model == "mistral-large-latest"


def test_env_overrides_reach_typed_fields():
    config = load_config(
        DEFAULT_CONFIG,
        env={
            "AGENTOP_MAX_ROUNDS": "9",
            "AGENTOP_TEMPERATURE": "0",
            "AGENTOP_N_CTX": "1024",
            "AGENTOP_WEIGHT_REPACK": "true",
            "MISTRAL_SERVER_URL": "http://127.0.0.1:9999",
            "WANDB_PROJECT": "my proj: #1",
        },
    )
    assert config.max_rounds == 9
    assert config.temperature == 0.0  # an explicit 0 is not replaced by the default
    assert config.local_models[0].n_ctx == 1024
    assert config.local_models[0].weight_repack is True
    assert config.mistral.server_url == "http://127.0.0.1:9999"
    assert config.tools["wandb_log"]["project"] == "my proj: #1"


def test_api_key_with_yaml_syntax_is_kept_whole():
    key = "abc: def # ghi"
    config = load_config(DEFAULT_CONFIG, env={"MISTRAL_API_KEY": key})
    assert config.mistral.api_key == key


def test_missing_required_variable_in_a_file(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text("mistral:\n  api_key: ${REQUIRED_KEY}\n")
    with pytest.raises(ConfigError, match="REQUIRED_KEY"):
        load_config(path, env={})
    config = load_config(path, env={"REQUIRED_KEY": "k"})
    assert config.mistral.api_key == "k"


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path, env={})


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    config = load_config(path, env={})
    assert config.local_models == () and config.mistral.models == ()
    assert config.resolved_default_model == ""
    assert config.max_rounds == 4


def test_small_config_file(tmp_path):
    path = tmp_path / "agents.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            default_model: ${MODEL:-tiny}
            local:
              models:
                - name: tiny
                  n_ctx: 512
                  n_threads: ${THREADS:-2}
            mistral:
              api_key: ${KEY:-}
              models: [mistral-small-latest]
            tools:
              hf_list_models:
            """
        )
    )
    config = load_config(path, env={})
    assert config.resolved_default_model == "tiny"
    assert config.local_models[0].n_threads == 2
    assert config.local_models[0].n_ctx == 512
    assert config.tools == {"hf_list_models": {}}
    assert config.model_choices() == [("tiny", "local")]
