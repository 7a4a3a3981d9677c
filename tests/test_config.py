"""Configuration from env and CLI: seed defaults, presets, and failures that name the setting."""

from __future__ import annotations

import pytest

from gateway.config import OPENAI_REALTIME_URL, ConfigError, load_config


def test_seed_defaults_and_local_engine_without_a_key() -> None:
    config = load_config([], {})
    assert (config.port, config.host, config.model, config.voice) == (5000, "0.0.0.0", "gpt-realtime", "alloy")
    td = config.turn_detection
    assert (td.threshold, td.silence_duration_ms, td.prefix_padding_ms) == (0.3, 600, 100)
    assert td.create_response and td.interrupt_response
    assert config.resolved_upstream == "local"
    assert config.realtime_url.startswith("ws://127.0.0.1:")
    assert "português do Brasil" in config.instructions
    session = config.default_session()
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["transcription"]["language"] == "pt"


def test_key_selects_openai_and_flags_override_env() -> None:
    config = load_config(["--port", "6000", "--vad-preset", "fast", "--vad-threshold", "0.4"],
                         {"OPENAI_API_KEY": "sk-abc", "PORT": "7000", "VOICE": "marin"})
    assert config.resolved_upstream == "openai" and config.realtime_url == OPENAI_REALTIME_URL
    assert config.port == 6000 and config.voice == "marin"
    assert config.turn_detection.silence_duration_ms == 200 and config.turn_detection.prefix_padding_ms == 50
    assert config.turn_detection.threshold == 0.4
    assert "sk-abc" not in repr(config)


def test_azure_style_endpoint() -> None:
    config = load_config([], {"OPENAI_API_KEY": "k", "UPSTREAM": "url", "UPSTREAM_AUTH_HEADER": "api-key",
                              "UPSTREAM_URL": "wss://x.openai.azure.com/openai/realtime?deployment=d"})
    assert config.realtime_url.startswith("wss://x.openai.azure.com")
    assert config.upstream_auth_header == "api-key"


@pytest.mark.parametrize("env,setting", [
    ({"PORT": "abc"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"UPSTREAM": "openai"}, "OPENAI_API_KEY"),
    ({"UPSTREAM_URL": "http://x"}, "UPSTREAM_URL"),
    ({"VAD_THRESHOLD": "1.5"}, "VAD_THRESHOLD"),
    ({"VAD_CREATE_RESPONSE": "maybe"}, "VAD_CREATE_RESPONSE"),
    ({"VAD_PRESET": "turbo"}, "VAD_PRESET"),
    ({"TLS_CERT": "/nonexistent.pem", "TLS_KEY": "/nonexistent.key"}, "TLS_CERT"),
    ({"TLS_CERT": "/etc/hostname"}, "TLS_CERT/TLS_KEY"),
    ({"ALLOWED_ORIGINS": "example.com"}, "ALLOWED_ORIGINS"),
    ({"ICE_SERVERS": "http://x"}, "ICE_SERVERS"),
    ({"TOKEN_TTL": "5"}, "TOKEN_TTL"),
])
def test_bad_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([], env)
    assert str(caught.value).startswith(setting)


def test_bad_config_exits_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main
    with pytest.raises(SystemExit) as caught:
        main(["--port", "0"])
    assert caught.value.code == 2
    assert "PORT must be 1-65535" in capsys.readouterr().err
