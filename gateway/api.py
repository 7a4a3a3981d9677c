"""The gateway as a Python library: two entry points, one per way of embedding it.

:func:`mount` serves the gateway's HTTP interface (client secrets, calls, sideband, ``/healthz``,
``/metrics``) inside an existing aiohttp application, under a prefix, next to the
application's own routes and middlewares::

    app = web.Application(middlewares=[my_auth])
    app.router.add_get("/", my_page)
    gateway.api.mount(app, Config(openai_api_key=key, allowed_origins=("https://shop.example",)))
    web.run_app(app)   # the browser's base URL is https://shop.example/voice

:func:`attach` puts a Realtime conversation on a peer connection the application already owns
and negotiates itself (its own signaling, SFU, SIP bridge…): the gateway takes the track
carrying the user's voice and gives back the assistant's track and the events::

    await pc.setRemoteDescription(offer)                     # the application's own signaling
    mic = next(t.receiver.track for t in pc.getTransceivers() if t.kind == "audio")
    session = await gateway.api.attach(pc, mic, config)
    pc.addTrack(session.outbound_track)                      # before answering
    await pc.setLocalDescription(await pc.createAnswer())
    async for event in session.events(): ...                 # GA server events; session.send({...}) back

Both run the same code as the standalone gateway (``python -m gateway``): the conversation core,
the upstream link with its reconnects, barge-in, the gateway's own Opus receive path. Runnable
examples: ``examples/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from .config import Config
from .core.conversation import TRUSTED_POLICY
from .core.policy import merge_session
from .embed.attached_session import AttachedSession
from .embed.mount import gateway_subapp

__all__ = ["AttachedSession", "Config", "attach", "mount"]


def mount(app: web.Application, config: Config, *, prefix: str = "/voice") -> web.Application:
    """Serve the gateway under ``prefix`` of ``app`` (a sub-application with its own middlewares,
    startup and cleanup); returns it. Call before ``app`` starts. Clients use
    ``https://host{prefix}`` as the gateway's base URL (``…{prefix}/v1`` for the ``openai``
    package). Calls live in this process: the ``WORKERS`` setting does not apply."""
    subapp = gateway_subapp(config, prefix)
    app.add_subapp(prefix, subapp)
    return subapp


async def attach(pc: RTCPeerConnection, track: MediaStreamTrack, config: Config, *,
                 session: Mapping[str, Any] | None = None) -> AttachedSession:
    """Start a conversation on ``track`` (an audio track ``pc`` receives) with ``session`` merged
    into ``config``'s default session (the audio formats stay the gateway's). Add
    ``outbound_track`` of the result to ``pc`` before answering. Raises ``ValueError`` for a
    track ``pc`` does not receive. The upstream is ``config``'s; with the local engine, run it
    (``python -m gateway.engine``) where ``config.engine_host``/``engine_port`` point."""
    initial = config.default_session()
    if session is not None:
        update, _ = TRUSTED_POLICY.strip(session, initial)
        initial = merge_session(initial, update)
    return AttachedSession(pc, track, config, initial)
