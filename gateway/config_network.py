"""Settings of the browser's network path: STUN/TURN, ICE, liveness, resume, set-up timers.

Used by ``gateway/webrtc/`` (``ice.py``, ``turn_credentials.py``, ``transport_timers.py``,
``browser_peer.py``) and ``gateway/server/call_peers.py`` (resume).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config_parse import Setting, check, check_choice, check_range, parse_bool, parse_csv
from .webrtc.turn_credentials import ice_url_problem


@dataclass(frozen=True)
class IceServer:
    """One entry of RTCConfiguration.iceServers (credentials are minted per token for TURN)."""

    urls: str

    @property
    def is_turn(self) -> bool:
        return self.urls.startswith(("turn:", "turns:"))


@dataclass(frozen=True)
class NetworkSettings:
    ice_servers: tuple[IceServer, ...] = ()  # stun:, turn:, turns: URLs, in order of preference
    turn_secret: str | None = field(default=None, repr=False)  # coturn's static-auth-secret
    turn_credential_ttl_s: int = 3600  # must cover a whole call: allocations refresh with it
    ice_transport_policy: str = "all"  # "relay": the gateway's own peer uses TURN only
    ice_connect_timeout_s: float = 10.0
    peer_timeout_s: float = 2.5  # no mic RTP for this long after connecting = the browser is gone
    resume_grace_s: float = 30.0  # a vanished browser may come back (new network) within this
    # Set-up retransmission timers for lossy links (webrtc/transport_timers.py); off: aiortc's own.
    fast_setup_timers: bool = True
    dtls_resend_initial_ms: int = 250
    dtls_resend_max_ms: int = 1200
    dtls_resends: int = 8
    sctp_rto_initial_ms: int = 250
    sctp_rto_min_ms: int = 250
    sctp_backoff_max_ms: int = 1000
    ice_rto_ms: int = 150
    setup_copies: int = 1  # each set-up datagram we send goes out this many more times
    setup_copy_gap_ms: int = 10
    dtls_role: str = "server"  # answer a=setup:passive to actpass offers ("client": aiortc's active)

    def _check_network(self) -> None:
        for server in self.ice_servers:
            problem = ice_url_problem(server.urls)
            check(problem is None, "ICE_SERVERS", f"entry {problem}")
        check(bool(self.turn_secret) or not any(s.is_turn for s in self.ice_servers), "TURN_SECRET",
              "is required when ICE_SERVERS has turn: or turns: URLs (coturn's static-auth-secret)")
        check_choice("ICE_TRANSPORT_POLICY", self.ice_transport_policy, ("all", "relay"))
        check(self.ice_transport_policy == "all" or any(s.is_turn for s in self.ice_servers),
              "ICE_TRANSPORT_POLICY", "relay needs a turn: URL in ICE_SERVERS")
        check(60 <= self.turn_credential_ttl_s <= 7 * 86400, "TURN_CREDENTIAL_TTL",
              f"must be between 60 s and a week, not {self.turn_credential_ttl_s}")
        check(self.ice_connect_timeout_s > 0, "ICE_CONNECT_TIMEOUT", "must be > 0")
        check(self.peer_timeout_s >= 1, "PEER_TIMEOUT", "must be >= 1 s")
        check(self.resume_grace_s >= 0, "RESUME_GRACE", "must be >= 0 (0 disables resuming)")
        check_range("DTLS_RESEND_INITIAL_MS", self.dtls_resend_initial_ms, 50, 1000)
        check_range("DTLS_RESEND_MAX_MS", self.dtls_resend_max_ms, 50, 10000)
        check_range("DTLS_RESENDS", self.dtls_resends, 0, 30)
        check_range("SCTP_RTO_INITIAL_MS", self.sctp_rto_initial_ms, 50, 3000)
        check_range("SCTP_RTO_MIN_MS", self.sctp_rto_min_ms, 50, 1000)
        check_range("SCTP_BACKOFF_MAX_MS", self.sctp_backoff_max_ms, 100, 60000)
        check_range("ICE_RTO_MS", self.ice_rto_ms, 50, 500)
        check_range("SETUP_COPIES", self.setup_copies, 0, 3)
        check_range("SETUP_COPY_GAP_MS", self.setup_copy_gap_ms, 0, 100)
        check_choice("DTLS_ROLE", self.dtls_role, ("server", "client"))
        check(self.dtls_resend_max_ms >= self.dtls_resend_initial_ms, "DTLS_RESEND_MAX_MS",
              "must be >= DTLS_RESEND_INITIAL_MS")
        check(self.sctp_rto_min_ms <= self.sctp_rto_initial_ms <= self.sctp_backoff_max_ms, "SCTP_RTO_INITIAL_MS",
              "must be between SCTP_RTO_MIN_MS and SCTP_BACKOFF_MAX_MS")


def _ice_servers(text: str) -> tuple[IceServer, ...]:
    return tuple(IceServer(urls=url) for url in parse_csv(text))


NETWORK_SETTINGS: tuple[Setting, ...] = (
    Setting("--ice-servers", "ICE_SERVERS", "ice_servers", _ice_servers, "comma list of stun:/turn: URLs"),
    Setting("--turn-secret", "TURN_SECRET", "turn_secret", str,
            "shared secret with the TURN server (coturn static-auth-secret)"),
    Setting("--turn-credential-ttl", "TURN_CREDENTIAL_TTL", "turn_credential_ttl_s", int,
            "lifetime (s) of minted TURN credentials; must cover a call"),
    Setting("--ice-transport-policy", "ICE_TRANSPORT_POLICY", "ice_transport_policy", str,
            "all, or relay to make the gateway's own peer use TURN only"),
    Setting("--ice-connect-timeout", "ICE_CONNECT_TIMEOUT", "ice_connect_timeout_s", float,
            "seconds for ICE to connect before the call is ended"),
    Setting("--peer-timeout", "PEER_TIMEOUT", "peer_timeout_s", float,
            "seconds without mic media before a connected browser is considered gone"),
    Setting("--resume-grace", "RESUME_GRACE", "resume_grace_s", float,
            "seconds a call whose browser vanished waits to be resumed (0 = end at once)"),
    Setting("--fast-setup-timers", "FAST_SETUP_TIMERS", "fast_setup_timers", parse_bool,
            "DTLS/SCTP/ICE retransmission timers for lossy links (false: aiortc's own, 1 s/3 s/0.5 s)"),
    Setting("--dtls-resend-initial-ms", "DTLS_RESEND_INITIAL_MS", "dtls_resend_initial_ms", int,
            "ms before our DTLS handshake flight is sent again (doubling)"),
    Setting("--dtls-resend-max-ms", "DTLS_RESEND_MAX_MS", "dtls_resend_max_ms", int,
            "longest ms between DTLS flight resends"),
    Setting("--dtls-resends", "DTLS_RESENDS", "dtls_resends", int, "resends of one DTLS flight, at most"),
    Setting("--sctp-rto-initial-ms", "SCTP_RTO_INITIAL_MS", "sctp_rto_initial_ms", int,
            "SCTP retransmission timeout (ms) before the first RTT sample (aiortc: 3000)"),
    Setting("--sctp-rto-min-ms", "SCTP_RTO_MIN_MS", "sctp_rto_min_ms", int,
            "smallest SCTP retransmission timeout (ms) (aiortc: 1000)"),
    Setting("--sctp-backoff-max-ms", "SCTP_BACKOFF_MAX_MS", "sctp_backoff_max_ms", int,
            "longest SCTP retransmission timeout (ms) while backing off before the first RTT sample"),
    Setting("--ice-rto-ms", "ICE_RTO_MS", "ice_rto_ms", int,
            "ms before an ICE connectivity check is retransmitted (doubling; aioice: 500)"),
    Setting("--setup-copies", "SETUP_COPIES", "setup_copies", int,
            "extra copies of each set-up datagram (STUN, DTLS, SCTP until the data channel opens); 0: none"),
    Setting("--setup-copy-gap-ms", "SETUP_COPY_GAP_MS", "setup_copy_gap_ms", int,
            "ms between a set-up datagram and its copy"),
    Setting("--dtls-role", "DTLS_ROLE", "dtls_role", str,
            "server: answer a=setup:passive to actpass offers (we send DTLS's last flight); client: aiortc's active"),
)
