"""The engine's hardening settings, and the key the gateway dials a local engine with."""

from __future__ import annotations

import pytest

from gateway.config import Config, load_config
from gateway.engine.config import EngineConfigError, load_engine_config


def test_the_key_comes_from_the_environment_only() -> None:
    config = load_engine_config([], {"ENGINE_API_KEY": "k" * 20})
    assert config.api_key == "k" * 20 and not config.api_key_generated
    assert "k" * 20 not in repr(config)
    with pytest.raises(SystemExit):  # there is no flag that would put it on a command line
        load_engine_config(["--api-key", "k" * 20], {})
    generated = load_engine_config([], {})
    assert generated.api_key_generated and len(generated.api_key) >= 32
    assert load_engine_config([], {}).api_key != generated.api_key  # a new one per start
    with pytest.raises(EngineConfigError, match="ENGINE_API_KEY"):
        load_engine_config([], {"ENGINE_API_KEY": "short"})


@pytest.mark.parametrize(("env", "message"), [
    ({"ENGINE_MAX_SESSIONS": "0"}, "ENGINE_MAX_SESSIONS"),
    ({"ENGINE_MAX_INPUT_AUDIO": "0.5"}, "ENGINE_MAX_INPUT_AUDIO"),
    ({"ENGINE_WARM_UP": "maybe"}, "ENGINE_WARM_UP"),
])
def test_bad_limits_fail_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(EngineConfigError, match=message):
        load_engine_config([], env)


def test_limits_from_flags_and_env() -> None:
    config = load_engine_config(["--max-sessions", "2"], {"ENGINE_MAX_INPUT_AUDIO": "12", "ENGINE_SPECULATE": "off"})
    assert (config.max_sessions, config.max_input_s, config.speculate, config.warm_up) == (2, 12.0, False, True)


def test_the_gateway_dials_the_local_engine_with_its_key_and_openai_with_openais() -> None:
    local = load_config([], {"ENGINE_API_KEY": "e" * 24})
    assert local.resolved_upstream == "local" and local.upstream_api_key == "e" * 24
    assert "e" * 24 not in repr(local)
    remote = Config(openai_api_key="sk-remote", engine_api_key="e" * 24)
    assert remote.resolved_upstream == "openai" and remote.upstream_api_key == "sk-remote"
    with pytest.raises(ValueError, match="ENGINE_API_KEY"):
        Config(engine_api_key="short")


def test_whispers_context_is_generic_by_default_and_can_be_replaced_or_turned_off() -> None:
    default = load_engine_config([], {}).stt_context
    assert default and "brasil" not in default.lower()  # names no topic (it made Whisper hear one)
    assert load_engine_config([], {"ENGINE_STT_CONTEXT": "Receitas de cozinha."}).stt_context == "Receitas de cozinha."
    assert load_engine_config(["--stt-context", "none"], {}).stt_context == "none"
