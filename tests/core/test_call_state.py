"""Call decisions outside the conversation: resumability, data-channel limits, mic backlog."""

from __future__ import annotations

import pytest

from gateway.core.call_state import CallLimits, CallState
from gateway.core.heard import cut_at_heard


def test_oversized_messages_are_refused_with_the_limit() -> None:
    state = CallState(CallLimits(max_client_message=1024), now=0.0)
    accepted, error = state.client_message(1025, now=0.0)
    assert not accepted and error is not None
    assert error["error"]["code"] == "message_too_large" and "1 KiB" in error["error"]["message"]
    assert state.client_message(1024, now=0.0) == (True, None)


def test_a_flood_is_cut_to_the_rate_with_one_warning_a_second() -> None:
    state = CallState(CallLimits(client_events_per_s=10, client_event_burst=20), now=0.0)
    results = [state.client_message(10, now=0.0) for _ in range(100)]
    assert sum(accepted for accepted, _ in results) == 20
    warnings = [error for _, error in results if error is not None]
    assert len(warnings) == 1 and warnings[0]["error"]["code"] == "rate_limited"
    assert state.client_message(10, now=0.5) == (True, None)  # 5 tokens back after 0.5 s
    later = [state.client_message(10, now=0.5) for _ in range(10)]
    assert [error for _, error in later if error is not None] == []  # < 1 s since the last warning
    assert state.client_message(10, now=1.6)[0]
    assert any(error for _, error in (state.client_message(10, now=1.6) for _ in range(20)))


@pytest.mark.parametrize(("reason", "connected_once", "grace", "waits"), [
    ("peer_gone", True, 30.0, True),
    ("ice_failed", True, 30.0, True),
    ("peer_gone", False, 30.0, False),  # never connected: nothing to resume
    ("peer_gone", True, 0.0, False),  # resume disabled
    ("closed", True, 30.0, False),  # the browser hung up on purpose
    ("replaced", True, 30.0, False),
])
def test_which_lost_browsers_may_resume(reason: str, connected_once: bool, grace: float, waits: bool) -> None:
    state = CallState(CallLimits(resume_grace_s=grace), now=0.0)
    assert state.peer_ended(reason, connected_once) is waits
    assert state.suspended is waits


def test_events_wait_for_the_resumed_browser_in_order_and_bounded() -> None:
    state = CallState(CallLimits(max_backlog_events=3), now=0.0)
    assert state.to_client({"type": "a"})
    state.peer_ended("peer_gone", connected_once=True)
    for kind in "bcde":
        assert not state.to_client({"type": kind})
    assert [e["type"] for e in state.resumed()] == ["c", "d", "e"]
    assert not state.suspended and state.resumes == 1
    assert state.to_client({"type": "f"})


def test_mic_audio_is_dropped_past_the_backlog_and_counted() -> None:
    state = CallState(CallLimits(max_backlog_audio=250), now=0.0)
    assert state.mic_frame(queued_audio=249)
    assert not state.mic_frame(queued_audio=250)
    assert state.dropped_frames == 1


@pytest.mark.parametrize(("fraction", "heard"), [
    (0.0, ""), (0.5, "um dois…"), (1.0, "um dois três quatro"), (2.0, "um dois três quatro"), (-1.0, ""),
])
def test_what_was_heard_of_a_cut_reply(fraction: float, heard: str) -> None:
    assert cut_at_heard("um dois três quatro", fraction) == heard
