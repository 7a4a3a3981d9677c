"""Prometheus metrics for one gateway process (served at ``/metrics``).

Each app owns its own registry, so tests and several apps in one process never share series.
Every series carries the ``worker`` label, so the series of several worker processes stay apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..core.turn_stats import Measurements

if TYPE_CHECKING:
    from .call_summary import CallSummary

_LATENCY_BUCKETS = (0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02,
                    0.03, 0.04, 0.06, 0.08, 0.16, 0.32)
_TURN_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_SETUP_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self, worker: str = "0", *, restarts: int = 0) -> None:
        """``restarts``: how many workers of this index the supervisor has replaced before this one."""
        self.registry = r = CollectorRegistry(auto_describe=True)
        w = {"worker": worker}
        self.active_calls = Gauge("gateway_active_calls", "Calls in progress", ["worker"], registry=r).labels(**w)
        self.calls_started = Counter("gateway_calls_started", "Calls accepted", ["worker"],
                                     registry=r).labels(**w)
        self._calls_ended = Counter("gateway_calls_ended", "Calls ended, by reason", ["worker", "reason"],
                                    registry=r)
        self.call_setup = Histogram("gateway_call_setup_seconds", "POST /v1/realtime/calls received → media "
                                    "connected", ["worker"], buckets=_SETUP_BUCKETS, registry=r).labels(**w)
        self.turn_latency = Histogram("gateway_turn_latency_seconds", "End of user speech → first assistant "
                                      "audio sent", ["worker"], buckets=_TURN_BUCKETS, registry=r).labels(**w)
        self._added_latency = Histogram(
            "gateway_added_latency_seconds", "Delay the gateway adds: inbound = mic audio received → sent "
            "upstream; outbound = upstream audio received → first RTP frame with it sent",
            ["worker", "direction"], buckets=_LATENCY_BUCKETS, registry=r)
        self.barge_in = Histogram("gateway_barge_in_seconds", "Reply cut (user speech or client clear) → first "
                                  "silent frame out", ["worker"], buckets=_LATENCY_BUCKETS, registry=r).labels(**w)
        self.upstream_connect = Histogram("gateway_upstream_connect_seconds", "Upstream WebSocket open time",
                                          ["worker"], buckets=_SETUP_BUCKETS, registry=r).labels(**w)
        self._upstream_errors = Counter("gateway_upstream_errors", "Upstream errors, by code",
                                        ["worker", "code"], registry=r)
        self._mic_frames = Counter("gateway_mic_frames", "Mic frames sent upstream, by origin "
                                   "(decoded, fec, concealed)", ["worker", "origin"], registry=r)
        self.mic_frames_dropped = Counter("gateway_mic_frames_dropped", "Mic frames dropped because the upstream "
                                          "was not keeping up (or was reconnecting)", ["worker"],
                                          registry=r).labels(**w)
        self.reply_audio_dropped = Counter("gateway_reply_audio_dropped_seconds", "Model audio dropped beyond "
                                           "the playout queue's bound (PLAYOUT_MAX_QUEUED)", ["worker"],
                                           registry=r).labels(**w)
        self.refused_events = Counter("gateway_upstream_refused_events", "Client events refused because the "
                                      "upstream send queue was full", ["worker"], registry=r).labels(**w)
        self._outbound_gaps = Counter("gateway_outbound_gaps", "Outbound frames sent > 30 ms after the previous one",
                                      ["worker"], registry=r).labels(**w)
        self.jitter_buffer_delay = Histogram("gateway_jitter_buffer_delay_seconds", "Receive jitter buffer "
                                             "delay per call (median at hang-up)", ["worker"],
                                             buckets=_LATENCY_BUCKETS, registry=r).labels(**w)
        # Kept by the worker slot, not the process: a replacement starts from its predecessors'
        # count (the supervisor passes it), so the series of one ``worker`` only ever goes up.
        self.worker_restarts = Counter("gateway_worker_restarts", "Times this worker's process died and the "
                                       "supervisor started a new one", ["worker"], registry=r).labels(**w)
        self.worker_restarts.inc(restarts)
        self._worker = worker
        self._mic_frame_children: dict[str, Any] = {}
        self.inbound_latency = self._added_latency.labels(worker=worker, direction="inbound")
        self.outbound_latency = self._added_latency.labels(worker=worker, direction="outbound")

    def observe(self, measured: Measurements) -> None:
        """Timings a call's conversation core took since its last drain."""
        for seconds in measured.turn_latency_s:
            self.turn_latency.observe(seconds)
        for seconds in measured.barge_in_s:
            self.barge_in.observe(seconds)
        for seconds in measured.outbound_latency_s:
            self.outbound_latency.observe(seconds)

    def call_ended(self, summary: CallSummary) -> None:
        self._calls_ended.labels(worker=self._worker, reason=summary.reason).inc()
        if summary.reply_dropped_s:
            self.reply_audio_dropped.inc(summary.reply_dropped_s)
        if summary.refused_events:
            self.refused_events.inc(summary.refused_events)

    def upstream_error(self, code: str) -> None:
        self._upstream_errors.labels(worker=self._worker, code=code).inc()

    def mic_frames(self, origin: str, count: int = 1) -> None:
        child = self._mic_frame_children.get(origin)  # bound once: 50 times a second per call
        if child is None:
            child = self._mic_frame_children[origin] = self._mic_frames.labels(worker=self._worker, origin=origin)
        child.inc(count)

    def outbound_gap(self, seconds: float) -> None:
        self._outbound_gaps.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
