"""An aiortc application that owns its peer connections and lets the gateway talk on them.

    OPENAI_API_KEY=sk-… python examples/attach_to_peer_connection.py [gateway flags…]
    # then POST an SDP offer (audio, Opus) to http://localhost:8081/offer: the answer comes back

The signaling is the application's own (here the simplest one: offer in, answer out); so is the
``RTCPeerConnection``. For each, :func:`gateway.api.attach` starts a Realtime conversation on
the caller's audio track and gives back the assistant's track, which the application adds
before answering, and the conversation's events. The assistant greets the caller first
(a ``response.create`` sent by the application). Settings as for ``python -m gateway``;
``APP_PORT`` picks the port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from gateway.api import AttachedSession, Config, attach
from gateway.config import load_config
from gateway.core.events import Event

logger = logging.getLogger("voice-app")
GREETING = {"type": "response.create", "response": {"instructions": "Cumprimente a pessoa em uma frase."}}


class VoiceApp:
    """One conversation per peer connection; every task and connection is closed at cleanup."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.events: list[Event] = []  # every event of every conversation, for whoever wants them
        self._calls: dict[asyncio.Task[None], RTCPeerConnection] = {}

    @property
    def conversations(self) -> int:
        return len(self._calls)

    async def offer(self, request: web.Request) -> web.Response:
        pc = RTCPeerConnection()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
            mic = next(t.receiver.track for t in pc.getTransceivers() if t.kind == "audio")
            session = await attach(pc, mic, self.config)
            pc.addTrack(session.outbound_track)  # before answering
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, StopIteration):
            await pc.close()
            raise web.HTTPBadRequest(text="send an SDP offer with an audio section") from None
        task = asyncio.create_task(self._converse(session, pc))
        self._calls[task] = pc
        task.add_done_callback(self._calls.pop)
        return web.Response(text=pc.localDescription.sdp, content_type="application/sdp")

    async def _converse(self, session: AttachedSession, pc: RTCPeerConnection) -> None:
        try:
            async for event in session.events():
                self.events.append(event)
                if event["type"] == "session.created":
                    session.send(GREETING)
                elif event["type"] == "response.output_audio_transcript.done":
                    logger.info("assistant: %s", event["transcript"])
            logger.info("conversation ended: %s", session.end_reason)
        finally:
            await session.close()
            await pc.close()

    async def close(self, app: web.Application) -> None:
        for pc in list(self._calls.values()):
            await pc.close()  # each conversation then ends by itself
        await asyncio.gather(*self._calls, return_exceptions=True)


VOICE_KEY = web.AppKey("voice", VoiceApp)


def make_app(config: Config) -> web.Application:
    voice = VoiceApp(config)
    app = web.Application()
    app.router.add_post("/offer", voice.offer)
    app.on_shutdown.append(voice.close)
    app[VOICE_KEY] = voice
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    web.run_app(make_app(load_config(sys.argv[1:])), port=int(os.environ.get("APP_PORT", "8081")))


if __name__ == "__main__":
    main()
