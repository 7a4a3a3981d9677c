"""Upstream error text never reaches the browser with keys, hosts or URLs in it (issue 13), and
hostile nesting on the data channel gets a clean ``error`` (no RecursionError)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from gateway.config import Config
from gateway.core.conversation import Conversation
from gateway.core.events import MAX_DEPTH, ProtocolError, loads
from gateway.core.policy import SessionPolicy
from gateway.core.upstream_errors import for_client, unsafe
from tests.schema import server_event_problem

LEAKS = [
    ("Incorrect API key provided: sk-proj-****************abcd. You can find your API key at "
     "https://platform.openai.com/account/api-keys.", ("sk-proj", "abcd", "platform.openai.com", "https://")),
    ("Incorrect API key provided: sk-...abcd", ("sk-", "abcd")),
    ("Rate limit reached for gpt-realtime in organization org-Q2x9Wk on tokens per min", ("org-Q2x9Wk",)),
    ("upstream connect error: connection refused to 10.20.30.40:443", ("10.20.30.40",)),
    ("Backend eastus2.api.cognitive.microsoft.com returned 502", ("microsoft.com", "eastus2")),
    ("The server had an error. Contact us through our help center at help.openai.com.", ("help.openai.com",)),
]
SAFE = ["Cancellation failed: no active response found", "Item 'item_abc123' not found.",
        "Invalid value: 'shimmer2'. Supported values are: 'alloy', 'ash', 'marin'.",
        "Missing required parameter: 'session.audio.output.voice'.", "Conversation already has an active response"]


def ready() -> Conversation:
    config = Config(openai_api_key="sk-x", upstream="openai")
    conv = Conversation(config.default_session(), SessionPolicy.from_fields(("model",)))
    conv.upstream_opened()
    conv.receive_upstream({"type": "session.updated", "event_id": "e", "session": conv.session}, 0.0)
    conv.data_to_upstream()
    conv.data_to_client()
    return conv


def upstream_error(message: str, **fields: Any) -> dict[str, Any]:
    return {"type": "error", "event_id": "event_up", "error": {
        "type": "invalid_request_error", "code": "invalid_value", "message": message, "param": "session.voice",
        "event_id": "evt_client", **fields}}


@pytest.mark.parametrize("message,secrets", LEAKS)
def test_upstream_error_text_with_secrets_is_replaced(message: str, secrets: tuple[str, ...],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    conv = ready()
    with caplog.at_level(logging.WARNING, "gateway.core"):
        conv.receive_upstream(upstream_error(message), 0.0)
    (sent,) = conv.data_to_client()
    error = sent["error"]
    assert (error["type"], error["code"], error["param"], error["event_id"]) == (
        "invalid_request_error", "invalid_value", "session.voice", "evt_client")
    assert error["message"] and "invalid_value" in error["message"]
    for secret in secrets:
        assert secret not in json.dumps(sent)
    assert server_event_problem(sent) is None
    assert message in caplog.text  # the operator still has the original


@pytest.mark.parametrize("message", SAFE)
def test_plain_upstream_error_text_reaches_the_client(message: str) -> None:
    conv = ready()
    conv.receive_upstream(upstream_error(message), 0.0)
    assert conv.data_to_client()[0]["error"]["message"] == message


def test_other_events_carrying_upstream_errors_are_cleaned() -> None:
    conv = ready()
    failed = {"type": "conversation.item.input_audio_transcription.failed", "event_id": "e", "item_id": "item_1",
              "content_index": 0, "error": {"type": "server_error", "code": "transcription_failed",
                                            "message": "POST https://10.0.0.7/v1/audio/transcriptions timed out"}}
    conv.receive_upstream(failed, 0.0)
    (sent,) = conv.data_to_client()
    assert "10.0.0.7" not in json.dumps(sent) and sent["error"]["code"] == "transcription_failed"
    done = {"type": "response.done", "event_id": "e", "response": {"id": "resp_1", "status": "failed",
            "status_details": {"type": "failed", "error": {"type": "server_error", "code": "x",
                                                           "message": "worker gpu-7.internal crashed"}}}}
    assert "internal" not in json.dumps(for_client(done))
    assert for_client(done)["response"]["id"] == "resp_1" and "internal" in json.dumps(done)  # not written into


def test_a_rejected_gateway_configuration_names_no_host() -> None:
    config = Config(openai_api_key="sk-x", upstream="openai")
    conv = Conversation(config.default_session(), SessionPolicy.from_fields(("model",)))
    conv.upstream_opened()
    update_id = conv.data_to_upstream()[0]["event_id"]
    conv.receive_upstream({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": "invalid_value", "event_id": update_id,
        "message": "Voice not available for deployment at https://myres.openai.azure.com"}}, 0.0)
    error = conv.data_to_client()[0]
    assert error["type"] == "error" and "azure" not in error["error"]["message"]
    assert "rejected the gateway's session configuration" in error["error"]["message"]


def test_the_patterns_spare_protocol_words() -> None:
    assert all(not unsafe(text) for text in SAFE)
    assert all(unsafe(text) for text, _ in LEAKS)


# --- hostile nesting ---------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "[" * 50_000,
    '{"type": "session.update", "session": ' + '{"a": ' * 40_000 + "1" + "}" * 40_001,
    '{"type": "response.create", "event_id": "evt_deep", "response": ' + "[" * (MAX_DEPTH + 5)
    + "]" * (MAX_DEPTH + 5) + "}",
])
def test_deeply_nested_messages_get_a_clean_error(message: str) -> None:
    conv = ready()
    conv.receive_client(message, now=0.0)  # no RecursionError
    (error,) = conv.data_to_client()
    assert error["type"] == "error" and error["error"]["code"] == "invalid_event"
    assert "deeper" in error["error"]["message"]
    assert server_event_problem(error) is None
    assert conv.data_to_upstream() == []
    if "evt_deep" in message:
        assert error["error"]["event_id"] == "evt_deep"


def test_nesting_up_to_the_limit_is_an_event() -> None:
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert loads('{"type": "x", "a": ' + inner + "}")["type"] == "x"
    with pytest.raises(ProtocolError):
        loads('{"type": "x", "a": [' + inner + "]}")
