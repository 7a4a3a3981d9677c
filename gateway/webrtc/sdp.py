"""Cheap sanity limits on an SDP offer, checked before aiortc parses it.

aiortc's parser trusts its input; these limits keep a hostile or broken offer from costing more
than a few microseconds, and give the client a precise reason instead of a parser traceback.
Candidate lines (in offers and trickle fragments) are checked against RFC 8839's grammar, so
aiortc's and aioice's parsers — which ``assert`` and ``int()`` on them — never see a malformed one.
"""

from __future__ import annotations

import re

from ..core.errors import BadRequest

MAX_LINES = 1000
MAX_LINE_LENGTH = 4096
MAX_MEDIA_SECTIONS = 8
# Remote candidates per browser connection, offer and trickle together: aioice pairs each with
# every local candidate and re-sorts its check list per addition (cost grows with the square),
# and checks each pair by sending STUN to an address the client chose. Browsers send a handful.
MAX_CANDIDATES = 50
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
_NUMBER = re.compile(r"[0-9]{1,10}")
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]{1,32}")
_FINGERPRINT = re.compile(r"(?i)(sha-1|sha-224|sha-256|sha-384|sha-512|md5|md2) [0-9a-f]{2}(:[0-9a-f]{2})+")


def check_offer(sdp: str) -> int:
    """How many candidates ``sdp`` brings; :class:`BadRequest` unless it looks like a WebRTC offer
    with an audio section."""
    if not sdp.lstrip().startswith("v=0"):
        raise BadRequest("The body is not an SDP offer (it must start with 'v=0').", code="invalid_offer")
    lines = sdp.splitlines()
    if len(lines) > MAX_LINES:
        raise BadRequest(f"The SDP offer has more than {MAX_LINES} lines.", code="invalid_offer")
    if any(len(line) > MAX_LINE_LENGTH for line in lines):
        raise BadRequest(f"An SDP line is longer than {MAX_LINE_LENGTH} characters.", code="invalid_offer")
    media = [line for line in lines if line.startswith("m=")]
    if len(media) > MAX_MEDIA_SECTIONS:
        raise BadRequest(f"The SDP offer has more than {MAX_MEDIA_SECTIONS} media sections.", code="invalid_offer")
    if not any(line.startswith("m=audio ") for line in media):
        raise BadRequest("The SDP offer has no audio section (m=audio).", code="invalid_offer")
    candidates = [line[len("a=candidate:"):] for line in lines if line.startswith("a=candidate:")]
    if len(candidates) > MAX_CANDIDATES:
        raise BadRequest(f"The SDP offer has more than {MAX_CANDIDATES} candidates.", code="invalid_offer")
    for candidate in candidates:
        problem = candidate_problem(candidate)
        if problem is not None:
            raise BadRequest(f"Malformed candidate {candidate[:80]!r}: {problem}.", code="invalid_offer")
    fingerprints = [line[len("a=fingerprint:"):].strip() for line in lines if line.startswith("a=fingerprint:")]
    if not fingerprints:
        raise BadRequest("The SDP offer has no DTLS fingerprint (a=fingerprint).", code="invalid_offer")
    if not all(_FINGERPRINT.fullmatch(value) for value in fingerprints):
        raise BadRequest("A DTLS fingerprint is malformed (a=fingerprint:sha-256 AB:CD:…).", code="invalid_offer")
    if not any(line.startswith("a=ice-ufrag:") for line in lines):
        raise BadRequest("The SDP offer has no ICE credentials (a=ice-ufrag).", code="invalid_offer")
    if sum(line.startswith("a=mid:") for line in lines) < len(media):
        raise BadRequest("Every media section of a WebRTC offer needs an a=mid line.", code="invalid_offer")
    return len(candidates)


def candidate_problem(value: str) -> str | None:
    """What is wrong with a candidate attribute's value (``foundation component transport priority
    address port typ type [name value]…``, RFC 8839 §5.1), or None."""
    bits = value.split()
    if len(bits) < 8:
        return "it needs at least 8 fields"
    foundation, component, transport, priority, address, port, typ, kind = bits[:8]
    extensions = bits[8:]
    if not _ICE_CHARS.fullmatch(foundation):
        return "bad foundation"
    if not _NUMBER.fullmatch(component) or not 1 <= int(component) <= 256:
        return "the component must be 1-256"
    if transport.lower() not in ("udp", "tcp"):
        return "the transport must be udp or tcp"
    if not _NUMBER.fullmatch(priority) or not 1 <= int(priority) < 2**32:
        return "bad priority"
    if len(address) > 255:
        return "the address is too long"
    if not _is_port(port):
        return "the port must be 0-65535"
    if typ != "typ" or kind not in CANDIDATE_TYPES:
        return f"the type must be one of {', '.join(sorted(CANDIDATE_TYPES))}"
    if len(extensions) % 2:
        return "extension attributes come in name/value pairs"
    for name, extension in zip(extensions[::2], extensions[1::2], strict=True):
        if name == "rport" and not _is_port(extension):
            return "rport must be 0-65535"
        if name == "generation" and not _NUMBER.fullmatch(extension):
            return "generation must be a number"
        if name == "tcptype" and extension not in ("active", "passive", "so"):
            return "tcptype must be active, passive or so"
    return None


def _is_port(text: str) -> bool:
    return bool(_NUMBER.fullmatch(text)) and int(text) <= 65535


MAX_TRICKLE_CANDIDATES = MAX_CANDIDATES


def parse_sdpfrag(fragment: str) -> list[tuple[str | None, str]]:
    """(mid, candidate line without ``a=``) for each candidate of a trickle-ice-sdpfrag (RFC 8840)."""
    candidates: list[tuple[str | None, str]] = []
    mid: str | None = None
    lines = fragment.splitlines()
    if len(lines) > MAX_LINES or any(len(line) > MAX_LINE_LENGTH for line in lines):
        raise BadRequest("The SDP fragment is too large.", code="invalid_sdpfrag")
    for line in lines:
        if line.startswith("a=mid:"):
            mid = line[len("a=mid:"):].strip()
        elif line.startswith("a=candidate:"):
            problem = candidate_problem(line[len("a=candidate:"):])
            if problem is not None:
                raise BadRequest(f"Malformed candidate {line[:80]!r}: {problem}.", code="invalid_sdpfrag")
            candidates.append((mid, line[2:].strip()))
        elif line.strip() and not line.startswith(("a=", "m=", "c=")):
            raise BadRequest(f"Unexpected line in the SDP fragment: {line[:80]!r}", code="invalid_sdpfrag")
    if len(candidates) > MAX_TRICKLE_CANDIDATES:
        raise BadRequest(f"More than {MAX_TRICKLE_CANDIDATES} candidates in one fragment.", code="invalid_sdpfrag")
    return candidates


def tidy_answer(sdp: str) -> str:
    """The answer as Chromium 156 accepts it: one DTLS fingerprint per section.

    aiortc lists SHA-256, SHA-384 and SHA-512 fingerprints of its certificate (RFC 8122 allows
    that); Chromium 156 rejects the answer with "Invalid SDP line". SHA-256 is the fingerprint
    every browser checks.
    """
    return "".join(line for line in sdp.splitlines(keepends=True)
                   if not line.startswith("a=fingerprint:") or line.startswith("a=fingerprint:sha-256 "))
