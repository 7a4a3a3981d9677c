"""TURN REST-API credentials: the exact scheme coturn's use-auth-secret checks.

That coturn really accepts them (and refuses expired or forged ones) is proven against a real
coturn in test_ice.py; here: the arithmetic, the expiry and the start-up validation of URLs.
"""

from __future__ import annotations

import pytest

from gateway.webrtc.turn_credentials import browser_ice_servers, ice_url_problem, mint, password_for


def test_username_and_password_follow_the_turn_rest_scheme() -> None:
    credential = mint("s3cret", "sess_abc", 600, clock=lambda: 1_700_000_000.7)
    assert credential.username == "1700000600:sess_abc"
    assert credential.expires_at == 1_700_000_600
    # A known vector, computed independently with openssl:
    #   printf '1700000600:sess_abc' | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert credential.password == "eYJ0YbhFso7vQPKBCcOfplqrEXY="
    assert "eYJ0" not in repr(credential)  # never in a log line by accident


def test_a_different_secret_or_identity_gives_a_different_password() -> None:
    base = mint("s3cret", "sess_abc", 600, clock=lambda: 1_700_000_000)
    assert mint("other", "sess_abc", 600, clock=lambda: 1_700_000_000).password != base.password
    assert mint("s3cret", "sess_abd", 600, clock=lambda: 1_700_000_000).password != base.password
    # Changing the expiry in the username breaks the password: nobody can extend a credential.
    forged_username = "1800000000:sess_abc"
    assert password_for("s3cret", forged_username) != base.password


def test_credentials_outlive_the_client_secret_they_come_with() -> None:
    """A call may start at the token's last second; the relay must then last a whole call."""
    credential = mint("s3cret", "sess_abc", 3600, clock=lambda: 1000.0, start_by=1600.0)
    assert credential.expires_at == 1600 + 3600
    assert mint("s3cret", "sess_abc", 3600, clock=lambda: 1000.0, start_by=900.0).expires_at == 1000 + 3600


@pytest.mark.parametrize("secret, identity, ttl, problem", [
    ("", "sess", 600, "secret"),
    ("s", "", 600, "identity"),
    ("s", "a\nb", 600, "identity"),
    ("s", "sess", 0, "lifetime"),
    ("s", "x" * 600, 600, "513 bytes"),
])
def test_bad_inputs_are_refused_with_a_reason(secret: str, identity: str, ttl: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        mint(secret, identity, ttl)


def test_browser_list_has_every_url_and_never_the_secret() -> None:
    credential = mint("s3cret", "sess_abc", 600)
    servers = browser_ice_servers(["stun:stun.example:3478", "turn:t.example:3478?transport=udp",
                                   "turns:t.example:5349?transport=tcp"], credential)
    assert servers == [
        {"urls": ["stun:stun.example:3478"]},
        {"urls": ["turn:t.example:3478?transport=udp", "turns:t.example:5349?transport=tcp"],
         "username": credential.username, "credential": credential.password},
    ]
    assert "s3cret" not in str(servers)
    assert browser_ice_servers(["stun:s:3478"], None) == [{"urls": ["stun:s:3478"]}]
    assert browser_ice_servers([], credential) == []


@pytest.mark.parametrize("url", [
    "stun:stun.example.com", "stun:203.0.113.7:3478", "turn:turn.example.com:3478?transport=udp",
    "turn:turn.example.com?transport=tcp", "turn:turn.example.com", "turns:turn.example.com:5349?transport=tcp",
    "turns:turn.example.com:443",
])
def test_urls_both_ends_understand_pass(url: str) -> None:
    assert ice_url_problem(url) is None


@pytest.mark.parametrize("url, says", [
    ("turn:turn.example.com:3478?transport=sctp", "must look like"),
    ("stun:stun.example.com:3478?transport=udp", "no ?transport"),
    ("turns:turn.example.com:5349?transport=udp", "TLS/TCP only"),
    ("turn:[2001:db8::1]:3478", "must look like"),  # aiortc cannot parse IPv6 literals
    ("stuns:stun.example.com", "must look like"),
    ("turn:turn.example.com:70000", "1-65535"),
    ("turn:user@turn.example.com", "must look like"),
    ("https://turn.example.com", "must look like"),
])
def test_urls_one_end_would_reject_or_ignore_are_named(url: str, says: str) -> None:
    problem = ice_url_problem(url)
    assert problem is not None and says in problem and url in problem
