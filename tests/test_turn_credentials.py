"""TURN REST-API credentials: the exact scheme coturn's use-auth-secret checks."""

from __future__ import annotations

import base64
import hashlib
import hmac

from gateway.turn_credentials import browser_ice_servers, mint


def test_username_and_password_follow_the_turn_rest_scheme() -> None:
    credential = mint("s3cret", "sess_abc", 600, clock=lambda: 1_700_000_000.7)
    assert credential.username == "1700000600:sess_abc"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1700000600:sess_abc", hashlib.sha1).digest()).decode()
    assert credential.password == expected
    assert credential.expires_at == 1_700_000_600
    # A known vector (computed independently with openssl: printf '1700000600:sess_abc' |
    # openssl dgst -sha1 -hmac s3cret -binary | base64).
    assert credential.password == "eYJ0YbhFso7vQPKBCcOfplqrEXY="


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
