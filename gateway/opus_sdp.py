"""What our SDP answer asks of the browser's Opus encoder.

aiortc answers Opus without any ``a=fmtp`` line, so Chrome sends 32 kbps without in-band FEC:
one lost packet is a lost 20 ms for the recognizer. The answer is the receiver's statement of
what it wants to receive (RFC 7587), so the gateway adds it to aiortc's answer text.
"""

from __future__ import annotations

import re

# Mono voice with in-band FEC; 40 kbps leaves room for the redundancy on top of ~30 kbps speech.
RECEIVE_PREFERENCES = {"minptime": "10", "useinbandfec": "1", "stereo": "0", "sprop-stereo": "0",
                       "maxaveragebitrate": "40000"}
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000(?:/\d)?$", re.IGNORECASE)


def request_opus_fec(sdp: str) -> str:
    """``sdp`` with our Opus receive preferences in every Opus payload's ``a=fmtp`` line."""
    lines = sdp.split("\r\n")
    opus_types = {m.group(1) for line in lines if (m := _RTPMAP.match(line))}
    out: list[str] = []
    has_fmtp = set()
    for line in lines:
        match = re.match(r"^a=fmtp:(\d+) (.*)$", line)
        if match and match.group(1) in opus_types:
            params = dict(p.split("=", 1) for p in match.group(2).split(";") if "=" in p)
            params.update(RECEIVE_PREFERENCES)
            line = f"a=fmtp:{match.group(1)} " + ";".join(f"{k}={v}" for k, v in params.items())
            has_fmtp.add(match.group(1))
        out.append(line)
    result: list[str] = []
    for line in out:
        result.append(line)
        match = _RTPMAP.match(line)
        if match and match.group(1) not in has_fmtp:
            result.append(f"a=fmtp:{match.group(1)} " + ";".join(f"{k}={v}" for k, v in RECEIVE_PREFERENCES.items()))
    return "\r\n".join(result)
