"""Sends the generic NACKs (RFC 4585 RTPFB, FMT 1) the jitter buffer's :class:`~gateway.media.nack.NackPolicy`
asks for, through the mic receiver's own RTCP (``RTCRtpReceiver._send_rtcp_nack``: aiortc sends
NACKs for video only, but the method packs any list of sequence numbers into PID/BLP pairs).

Each send is a task this object owns: at most a few in flight, all cancelled by :meth:`close`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)
MAX_IN_FLIGHT = 8  # RTCP packets; beyond it (the transport is stuck) new requests are dropped


class NackChannel:
    def __init__(self, receiver: Any) -> None:
        if not callable(getattr(receiver, "_send_rtcp_nack", None)):
            raise RuntimeError("aiortc's RTCRtpReceiver has no _send_rtcp_nack: NACK is written for aiortc==1.16.0")
        self._receiver = receiver
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0  # RTCP NACK packets

    def send(self, media_ssrc: int, sequence_numbers: list[int]) -> None:
        """``sequence_numbers`` in sending order; split where they wrap past 65535, since aiortc
        packs (and its sender unpacks) the bitmask without wrapping."""
        runs: list[list[int]] = []
        for seq in sequence_numbers:
            if runs and seq > runs[-1][-1]:
                runs[-1].append(seq)
            else:
                runs.append([seq])
        for run in runs:
            if len(self._tasks) >= MAX_IN_FLIGHT:
                return
            task = asyncio.get_running_loop().create_task(self._send(media_ssrc, run))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, media_ssrc: int, sequence_numbers: list[int]) -> None:
        try:
            await self._receiver._send_rtcp_nack(media_ssrc, sequence_numbers)
            self.sent += 1
        except Exception:  # a closing transport: the NACK is moot
            logger.debug("NACK not sent", exc_info=True)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
