"""The call's peer when the application owns the peer connection (``gateway.api.attach``).

The application keeps its own signaling and its own ``RTCPeerConnection``; the gateway takes
the track carrying the user's voice and gives back the assistant's. :class:`AttachedPeer` is a
:class:`~gateway.webrtc.browser_peer.BrowserPeer` without the parts that belong to the
application: no offer to answer, no ``oai-events`` data channel (events go to the application
through ``deliver``), and the peer connection is the application's to close. What it keeps:
the outbound track (20 ms pacing, mono voice Opus with FEC tuned from RTCP), the gateway's
own receive path on the mic, and the liveness watch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from ..config import Config
from ..core.events import Event
from ..webrtc.browser_peer import BrowserPeer

logger = logging.getLogger(__name__)


class AttachedPeer(BrowserPeer):
    def __init__(self, config: Config, configuration: RTCConfiguration | None, *, pc: RTCPeerConnection,
                 track: MediaStreamTrack, deliver: Callable[[Event], None], **hooks: Any) -> None:
        receiver = next((t.receiver for t in pc.getTransceivers() if t.receiver.track is track), None)
        if track.kind != "audio" or receiver is None:
            raise ValueError("attach() needs an audio track this peer connection receives (from its 'track' event)")
        super().__init__(config, configuration, pc=pc, **hooks)
        self._deliver = deliver
        self._remote_track = (track, receiver)
        self._track_ready.set()
        pc.on("connectionstatechange", self._on_connection_state)
        if pc.connectionState == "connected":  # attached to a call already under way
            self._on_connection_state()

    async def run(self) -> str:
        """Once ICE connected, the application has added :attr:`outbound` to its peer connection
        (it does so before answering): serve it like a browser's from there."""
        if self._sender is None:
            gone = asyncio.ensure_future(self._gone.wait())
            connected = asyncio.ensure_future(self._connected.wait())
            try:
                await asyncio.wait({gone, connected}, timeout=self._config.ice_connect_timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                connected.cancel()
            if self._gone.is_set():
                return self.gone_reason
            if not self._connected.is_set():
                logger.warning("the application's peer connection did not connect within %.0f s",
                               self._config.ice_connect_timeout_s)
                return "ice_timeout"
            problem = self._find_sender()
            if problem is not None:
                logger.error("%s", problem)
                return "no_outbound_track"
        return await super().run()

    def _find_sender(self) -> str | None:
        transceiver = next((t for t in self.pc.getTransceivers() if t.sender.track is self.outbound), None)
        if transceiver is None:
            return "the application did not add outbound_track to its peer connection before answering"
        codecs = getattr(transceiver, "_codecs", None) or []  # aiortc's negotiated codecs, preferred first
        if codecs and codecs[0].mimeType.lower() != "audio/opus":
            return f"outbound_track sends Opus, but the connection negotiated {codecs[0].mimeType}"
        self._sender = transceiver.sender
        return None

    # --- events go to the application ---------------------------------------------------------

    def send(self, event: Event) -> None:
        self._deliver(event)

    async def say_goodbye(self, event: Event) -> None:
        self._deliver(event)

    async def close(self) -> None:
        """The conversation is over: stop sending and listening; the peer connection stays open."""
        self.stop("closed")
        self.pc.remove_listener("connectionstatechange", self._on_connection_state)
        self.outbound.stop()
