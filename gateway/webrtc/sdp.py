"""Cheap sanity limits on an SDP offer, checked before aiortc parses it.

aiortc's parser trusts its input; these limits keep a hostile or broken offer from costing more
than a few microseconds, and give the client a precise reason instead of a parser traceback.
"""

from __future__ import annotations

from ..core.errors import BadRequest

MAX_LINES = 1000
MAX_LINE_LENGTH = 4096
MAX_MEDIA_SECTIONS = 8
MAX_CANDIDATES = 200


def check_offer(sdp: str) -> None:
    """Raise :class:`BadRequest` unless ``sdp`` looks like a WebRTC offer with an audio section."""
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
    if sum(line.startswith("a=candidate:") for line in lines) > MAX_CANDIDATES:
        raise BadRequest(f"The SDP offer has more than {MAX_CANDIDATES} candidates.", code="invalid_offer")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise BadRequest("The SDP offer has no DTLS fingerprint (a=fingerprint).", code="invalid_offer")
    if not any(line.startswith("a=ice-ufrag:") for line in lines):
        raise BadRequest("The SDP offer has no ICE credentials (a=ice-ufrag).", code="invalid_offer")
    if sum(line.startswith("a=mid:") for line in lines) < len(media):
        raise BadRequest("Every media section of a WebRTC offer needs an a=mid line.", code="invalid_offer")


MAX_TRICKLE_CANDIDATES = 50


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
