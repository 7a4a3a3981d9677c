"""What our SDP answer asks of the browser's Opus encoder.

aiortc answers Opus without any ``a=fmtp`` line, so Chrome sends 32 kbps full-band without
in-band FEC: one lost packet is a lost 20 ms for the recognizer. The answer is the receiver's
statement of what it wants to receive (RFC 7587 §7), so the gateway adds it to aiortc's answer:

- ``useinbandfec=1``: each packet also carries the previous frame at low bitrate (LBRR);
  libwebrtc scales it with the loss our RTCP receiver reports show.
- ``maxaveragebitrate=40000``: libwebrtc takes it as its target, leaving room for the FEC on
  top of ~30 kbps speech.
- ``maxplaybackrate=24000``: the upstream hears 24 kHz audio, so super-wideband is all we use;
  the encoder spends no bits above 12 kHz.
- ``stereo=0; sprop-stereo=0``: mono; ``minptime=10`` and ``a=ptime:20``: 20 ms packets.

How to see that a browser honours it: libwebrtc sets its encoder's expected loss from our RTCP
receiver reports, and libopus codes no LBRR while that is 0 %, so look under loss (the netbed):
the call's ``receive_stats()`` counts ``fec_packets`` (received packets whose SILK header has the
LBRR flag, :func:`gateway.media.opus.has_inband_fec`) and ``frames_fec`` (frames rebuilt from them) —
with speech and 10 % loss most voiced packets carry FEC and ``frames_fec`` ≫ ``frames_concealed``.
In the browser, ``pc.getStats()``'s audio ``outbound-rtp`` shows ~100-byte payloads
(``bytesSent / packetsSent``, 40 kbps) instead of ~80 at the default 32 kbps, and a
``targetBitrate`` of 40000 where Chrome reports one.
"""

from __future__ import annotations

import re

RECEIVE_PREFERENCES = {"minptime": "10", "useinbandfec": "1", "stereo": "0", "sprop-stereo": "0",
                       "maxaveragebitrate": "40000", "maxplaybackrate": "24000"}
PTIME_MS = 20
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000(?:/\d+)?$", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+) ?(.*)$")


def request_opus_fec(sdp: str) -> str:
    """``sdp`` with our Opus receive preferences in every Opus payload's ``a=fmtp`` line (merged
    with parameters already there) and a ``ptime`` in each audio section that has Opus."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    sections = re.split(r"(?m)^(?=m=)", sdp.rstrip(newline))
    return "".join(_munge_section(section, newline) for section in sections)  # each ends with newline


def _munge_section(section: str, newline: str) -> str:
    lines = section.rstrip(newline).split(newline)
    if not lines[0].startswith("m=audio"):
        return section.rstrip(newline) + newline
    opus = {m.group(1) for line in lines if (m := _RTPMAP.match(line))}
    if not opus:
        return section.rstrip(newline) + newline
    out: list[str] = []
    has_fmtp: set[str] = set()
    for line in lines:
        match = _FMTP.match(line)
        if match and match.group(1) in opus:
            params = dict(p.strip().split("=", 1) for p in match.group(2).split(";") if "=" in p)
            params.update(RECEIVE_PREFERENCES)
            line = _fmtp(match.group(1), params)
            has_fmtp.add(match.group(1))
        if not line.startswith("a=ptime:"):
            out.append(line)
    result: list[str] = []
    for line in out:
        result.append(line)
        match = _RTPMAP.match(line)
        if match and match.group(1) not in has_fmtp:
            result.append(_fmtp(match.group(1), RECEIVE_PREFERENCES))
    result.append(f"a=ptime:{PTIME_MS}")
    return newline.join(result) + newline


def _fmtp(payload_type: str, params: dict[str, str]) -> str:
    return f"a=fmtp:{payload_type} " + ";".join(f"{key}={value}" for key, value in params.items())
