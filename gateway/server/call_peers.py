"""The browser connections of one call, one after another.

A call outlives its browser's connection: when the connection vanishes (a network change), the
call waits ``RESUME_GRACE`` for the same browser to come back on a new one (``POST
/v1/realtime/calls`` with the resume token), which then takes over the conversation and the
upstream session. :class:`CallPeers` holds the current peer, a resumed one waiting to take
over, and the closes of retired peers that outlive them; which losses may be resumed and what a
new connection is told first are :class:`~gateway.core.call_state.CallState`'s decisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Config
from ..core.call_state import CallState
from ..core.errors import Conflict, NotFound
from ..core.events import Event
from ..webrtc.browser_peer import BrowserPeer

logger = logging.getLogger(__name__)

Accept = Callable[[BrowserPeer, str], Awaitable[str]]  # a peer and an offer → the SDP answer


class CallPeers:
    def __init__(self, new_peer: Callable[[], BrowserPeer], state: CallState, config: Config,
                 ended: asyncio.Event) -> None:
        """``new_peer``: a peer wired to the call; ``ended``: set once the call is over."""
        self._new_peer = new_peer
        self._state = state
        self._config = config
        self._ended = ended
        self.current = new_peer()
        self._next_peer: BrowserPeer | None = None  # a resumed connection waiting to take over
        self._resuming = False  # a resume is answering its offer
        self._resumed = asyncio.Event()
        self._lingering: list[asyncio.Future[None]] = []

    @property
    def latest(self) -> BrowserPeer:
        """Where late candidates go: a resumed connection about to take over, else the current one."""
        return self._next_peer or self.current

    async def resume(self, offer_sdp: str, accept: Accept) -> str:
        """A new connection from the same browser (its network changed) answers ``offer_sdp``
        and will take over from the current one.

        Only a *suspended* call is taken over — its browser vanished and the call waits for it
        (``CallState.suspended``) — so a leaked resume token cannot steal a live call (409
        ``call_not_suspended``; the browser retries until the gateway has noticed its loss,
        within ``PEER_TIMEOUT``). One resume at a time (409 ``resume_in_progress``), and one
        that loses the race with a hang-up closes its new connection and answers 404.
        """
        self._check_resumable()
        self._resuming = True
        try:
            peer = self._new_peer()
            try:
                answer = await accept(peer, offer_sdp)
            except BaseException:
                await peer.close()
                raise
        finally:
            self._resuming = False
        try:
            self._check_resumable()  # the call may have ended, or come back, while we answered
        except (Conflict, NotFound):
            await self.retire(peer)
            raise
        self._next_peer = peer
        self._resumed.set()
        return answer

    def _check_resumable(self) -> None:
        if self._ended.is_set():
            raise NotFound("This call has ended; start a new one.", code="call_not_found")
        if self._resuming or self._next_peer is not None:
            raise Conflict("Another connection is resuming this call right now.", code="resume_in_progress",
                           headers={"Retry-After": "1"})
        if not self._state.suspended:
            raise Conflict("This call's browser is still connected: a resume token only brings back a call whose "
                           "connection was lost (the gateway notices within "
                           f"{self._config.peer_timeout_s:g} s).", code="call_not_suspended",
                           headers={"Retry-After": "1"})

    async def serve(self, on_lost: Callable[[], None]) -> str:
        """One browser connection after another: a vanished one may be resumed within the grace
        (``on_lost`` is called when the wait begins). Returns why the call must end."""
        while True:
            peer = self.current
            reason = await peer.run()
            await self.retire(peer)
            if self._next_peer is not None:
                self._take_next_peer()
                continue
            if not self._state.peer_ended(reason, peer.connected_once):
                return reason
            logger.info("browser connection lost (%s): the call waits %.0f s for it to resume", reason,
                        self._config.resume_grace_s)
            on_lost()
            try:
                await asyncio.wait_for(self._resumed.wait(), self._config.resume_grace_s)
            except TimeoutError:
                return reason
            self._take_next_peer()

    def _take_next_peer(self) -> None:
        assert self._next_peer is not None
        self.current, self._next_peer = self._next_peer, None
        self._resumed.clear()
        for event in self._state.resumed():
            self.current.send(event)

    async def retire(self, peer: BrowserPeer) -> None:
        await peer.close()
        if peer.lingering_close is not None:
            self._lingering.append(peer.lingering_close)

    async def close(self, goodbye: Event | None) -> asyncio.Future[Any] | None:
        """Close every connection, telling a still-connected browser ``goodbye`` first; the
        closes that outlive this (aiortc's, bounded), if any."""
        peer = self.current
        if goodbye is not None and not self._state.suspended:
            await peer.say_goodbye(goodbye)
        await self.retire(peer)
        if self._next_peer is not None:
            await self.retire(self._next_peer)
        pending = [future for future in self._lingering if not future.done()]
        return asyncio.ensure_future(asyncio.gather(*pending, return_exceptions=True)) if pending else None
