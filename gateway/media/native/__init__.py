"""The native media path (``MEDIA_PATH=native``): a call's steady-state RTP in C.

Once a call's DTLS is up, :class:`~gateway.media.native.call_media.NativeCallMedia` takes its
RTP off aiortc's per-packet Python: ``_pump.c`` (libsrtp2 through the CPython API, built by
``scripts/setup_native.sh``) demultiplexes the call's UDP datagrams, queues SRTP, and
unprotects, parses and gates a whole batch in one call; the jitter buffer, FEC, concealment and
decoding stay :class:`~gateway.media.audio_receiver.RtpMicSource`'s. Out, one
:class:`~gateway.media.native.pacer.Pacer` timer per worker (owned by its
:class:`~gateway.media.native.shared_media.SharedMedia`) paces every call's
:class:`~gateway.media.outbound_audio.OutboundAudioTrack` and hands each frame to C, which
builds, protects, sends and keeps the packet for a NACK's resend. aiortc keeps signaling, ICE,
DTLS and RTCP (NACKs for our audio excepted: :mod:`~gateway.media.native.nack_resend`).
"""

from __future__ import annotations

import logging
from functools import cache
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

BUILD_HINT = "build it with scripts/setup_native.sh (Debian: gcc, libsrtp2-dev, the Python headers)"


class NativeUnavailable(RuntimeError):
    """The extension is not built (or not loadable) here."""


def load() -> ModuleType:
    """The compiled ``_pump`` module, or :class:`NativeUnavailable` saying how to build it."""
    try:
        from . import _pump  # type: ignore[attr-defined]
    except ImportError as exc:
        raise NativeUnavailable(f"the native media path is not built ({exc}); {BUILD_HINT}") from None
    return _pump


@cache
def available() -> str | None:
    """None if the native path can be used, else why not."""
    try:
        load()
    except NativeUnavailable as exc:
        return str(exc)
    return None


@cache
def announce(media_path: str, resolved: str) -> None:
    """Say once per process which media path calls use (``MEDIA_PATH`` and what it resolved to)."""
    if media_path == "auto" and resolved == "python":
        logger.warning("media path: python (MEDIA_PATH=auto and %s)", available())
    else:
        logger.info("media path: %s%s", resolved, " (MEDIA_PATH=auto)" if media_path == "auto" else "")


def announce_config(config: Any) -> str:
    """:func:`announce` for a :class:`~gateway.config.Config`; returns the resolved path."""
    resolved: str = config.resolved_media_path
    announce(config.media_path, resolved)
    return resolved
