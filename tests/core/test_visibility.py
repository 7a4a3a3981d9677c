"""What the browser is shown of what a sideband backend does: driven event by event, no I/O."""

from __future__ import annotations

from gateway.core.events import error_event, server_event
from gateway.core.visibility import Visibility

SESSION = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be the shop's assistant.",
           "tools": [{"type": "function", "name": "lookup_order"}], "tool_choice": "auto",
           "audio": {"output": {"voice": "alloy"}}}


def test_nothing_is_hidden_until_the_backend_sets_it() -> None:
    visibility = Visibility()
    updated = server_event("session.updated", session=SESSION)
    assert visibility.for_browser(updated) == updated


def test_fields_the_backend_set_leave_every_later_session_the_browser_sees() -> None:
    visibility = Visibility()
    visibility.from_backend({"type": "session.update", "session": {"type": "realtime", "instructions": "secret",
                                                                    "tools": []}})
    for kind in ("session.updated", "session.created"):
        shown = visibility.for_browser(server_event(kind, session=SESSION))
        assert shown is not None
        assert "instructions" not in shown["session"] and "tools" not in shown["session"]
        assert shown["session"]["tool_choice"] == "auto"  # not set by the backend: still shown
        assert shown["session"]["audio"] == SESSION["audio"]
    assert SESSION["instructions"] == "Be the shop's assistant."  # the backend's copy is untouched
    assert visibility.for_backend(server_event("session.updated", session=SESSION))["session"] == SESSION


def test_other_events_pass_unchanged() -> None:
    visibility = Visibility()
    visibility.from_backend({"type": "session.update", "session": {"tools": []}})
    done = server_event("response.function_call_arguments.done", name="lookup_order", arguments="{}")
    assert visibility.for_browser(done) is done


def test_errors_caused_by_the_backend_go_to_the_backend_alone_under_its_own_id() -> None:
    visibility = Visibility()
    sent = visibility.from_backend({"type": "response.create", "event_id": "evt_1"})
    assert sent["event_id"] != "evt_1" and sent["event_id"].startswith("event_sb_")
    caused = error_event("bad tool", code="invalid_value", event_id=sent["event_id"])
    assert visibility.for_browser(caused) is None
    assert visibility.for_backend(caused)["error"]["event_id"] == "evt_1"
    # The browser's own event with the same id gets its own error.
    browsers = error_event("refused", code="invalid_event", event_id="evt_1")
    assert visibility.for_browser(browsers) == browsers
    general = error_event("upstream reconnecting", code="upstream_reconnecting")
    assert visibility.for_browser(general) == general


def test_an_event_without_id_gets_one_and_its_error_stays_anonymous_for_the_backend() -> None:
    visibility = Visibility()
    sent = visibility.from_backend({"type": "response.cancel"})
    caused = error_event("no response", code="response_cancel_not_active", event_id=sent["event_id"])
    assert visibility.for_browser(caused) is None
    assert visibility.for_backend(caused)["error"]["event_id"] is None


def test_remembered_ids_are_bounded() -> None:
    visibility = Visibility(max_remembered_ids=3)
    first = visibility.from_backend({"type": "response.create"})["event_id"]
    for _ in range(3):
        visibility.from_backend({"type": "response.create"})
    late = error_event("late", event_id=first)
    assert visibility.for_browser(late) == late  # forgotten: shown like any error
