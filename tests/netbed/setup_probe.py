"""Inside the bed's hosts: logs every datagram a set-up sends and receives, and the transports'
states, with the wall clock (all hosts share it), for :mod:`bench.setup_phases` and
``tests/netbed/test_setup_under_loss.py``.

    python -m tests.netbed.setup_probe --role gateway <serve_gateway flags>    (SETUP_PHASES_OUT=log.jsonl)
    python -m tests.netbed.setup_probe --role client [--client-copies N] <call_client flags>

The client stands in for a browser: aiortc with the tuned timers (``--tuned-timers``) but, unless
``--client-copies``, without the gateway's copies of set-up datagrams (a browser sends each once).
:func:`analyse` merges both ends' logs into one set-up's milestones, phases and lost datagrams.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OUT_ENV = "SETUP_PHASES_OUT"
PHASES = ("http", "ice", "dtls", "sctp", "dcep")
HANDSHAKE = {1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest", 4: "NewSessionTicket", 8: "EncryptedExt",
             11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone",
             15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished"}
CHUNKS = {0: "DATA", 1: "INIT", 2: "INIT-ACK", 3: "SACK", 4: "HB", 5: "HB-ACK", 6: "ABORT", 9: "ERROR",
          10: "COOKIE-ECHO", 11: "COOKIE-ACK", 130: "RECONFIG", 192: "FWD-TSN"}


# --- the probe -----------------------------------------------------------


def dtls_label(data: bytes) -> str:
    """The DTLS records of one datagram: handshake messages by name while in clear, else types."""
    parts, offset = [], 0
    while offset + 13 <= len(data):
        kind = data[offset]
        if kind >= 32:  # DTLS 1.3 unified header: encrypted, length may be implicit
            parts.append("enc13")
            break
        epoch = struct.unpack_from("!H", data, offset + 3)[0]
        length = struct.unpack_from("!H", data, offset + 11)[0]
        if kind == 22:
            name = HANDSHAKE.get(data[offset + 13], f"hs{data[offset + 13]}") if epoch == 0 and offset + 13 < len(data) else "hs-enc"
            parts.append(name)
        else:
            parts.append({20: "CCS", 21: "alert", 23: "app"}.get(kind, f"t{kind}"))
        offset += 13 + length
    return "+".join(parts)


def sctp_label(packet: bytes) -> str:
    """The chunks of one SCTP packet (plaintext), DCEP messages by name."""
    parts, offset = [], 12
    while offset + 4 <= len(packet):
        kind, _, length = struct.unpack_from("!BBH", packet, offset)
        name = CHUNKS.get(kind, f"c{kind}")
        if kind == 0 and offset + 16 <= len(packet):
            ppid = struct.unpack_from("!I", packet, offset + 12)[0]
            first = packet[offset + 16] if offset + 16 < len(packet) else -1
            name = {3: "OPEN", 2: "ACK"}.get(first, "DATA") if ppid == 50 else "DATA"
        parts.append(name)
        offset += max(4, (length + 3) // 4 * 4)
    return "+".join(parts)


class Probe:
    """Logs datagrams and transport states of every connection in this process (see module doc)."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.events: list[dict[str, Any]] = []
        self._sctp_pending: str | None = None

    def log(self, kind: str, **fields: Any) -> None:
        self.events.append({"t": time.time(), "side": self.side, "ev": kind, **fields})

    def datagram(self, direction: str, data: bytes, port: int) -> None:
        digest = hashlib.sha1(data).hexdigest()[:12]
        first = data[0] if data else -1
        if first < 4:
            from aioice import stun
            try:
                message = stun.parse_message(data)
                label = f"STUN {message.message_method.name.lower()} {message.message_class.name.lower()}"
                if "USE-CANDIDATE" in message.attributes:
                    label += " use-candidate"
                extra = {"tid": message.transaction_id.hex()[:8]}
            except ValueError:
                label, extra = "STUN?", {}
        elif 19 < first < 64:
            label, extra = "DTLS " + dtls_label(data), {}
            if label == "DTLS app" and direction == "tx" and self._sctp_pending:
                label, self._sctp_pending = f"SCTP {self._sctp_pending}", None
        elif 127 < first < 192:
            label, extra = "SRTP", {}
        else:
            label, extra = f"?{first}", {}
        self.log(direction, h=digest, what=label, port=port, size=len(data), **extra)

    def install(self) -> None:
        from aioice import ice
        from aiortc import rtcdatachannel, rtcdtlstransport, rtcicetransport, rtcsctptransport

        probe = self
        protocol = ice.StunProtocol

        def port_of(transport: Any) -> int:
            try:
                return int(transport.get_extra_info("sockname")[1])
            except Exception:
                return 0

        received, send_stun, send_data = protocol.datagram_received, protocol.send_stun, protocol.send_data

        def datagram_received(self: Any, data: bytes, addr: Any) -> None:
            probe.datagram("rx", bytes(data), port_of(self.transport))
            received(self, data, addr)

        def stun_out(self: Any, message: Any, addr: Any) -> None:
            probe.datagram("tx", bytes(message), port_of(self.transport))
            send_stun(self, message, addr)

        async def data_out(self: Any, data: bytes, addr: Any) -> None:
            probe.datagram("tx", data, port_of(self.transport))
            await send_data(self, data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign]
        protocol.send_stun = stun_out  # type: ignore[method-assign]
        protocol.send_data = data_out  # type: ignore[method-assign]

        dtls = rtcdtlstransport.RTCDtlsTransport
        dtls_send, dtls_state = dtls._send_data, dtls._set_state

        async def plain_out(self: Any, data: bytes) -> None:
            probe._sctp_pending = sctp_label(data)
            await dtls_send(self, data)

        def dtls_set_state(self: Any, state: Any) -> None:
            if state != self._state:
                probe.log("dtls", state=state.name.lower(), role=self._role)
            dtls_state(self, state)

        dtls._send_data = plain_out  # type: ignore[method-assign]
        dtls._set_state = dtls_set_state  # type: ignore[method-assign]

        sctp = rtcsctptransport.RTCSctpTransport
        sctp_handle, sctp_state = sctp._handle_data, sctp._set_state

        async def plain_in(self: Any, data: bytes) -> None:
            probe.log("sctp_rx", what=sctp_label(data))
            await sctp_handle(self, data)

        def sctp_set_state(self: Any, state: Any) -> None:
            if state != self._association_state:
                probe.log("sctp", state=state.name.lower())
            sctp_state(self, state)

        sctp._handle_data = plain_in  # type: ignore[method-assign]
        sctp._set_state = sctp_set_state  # type: ignore[method-assign]

        ice_transport = rtcicetransport.RTCIceTransport
        ice_state = ice_transport._RTCIceTransport__setState  # type: ignore[attr-defined]

        def ice_set_state(self: Any, state: str) -> None:
            probe.log("ice", state=state)
            ice_state(self, state)

        ice_transport._RTCIceTransport__setState = ice_set_state  # type: ignore[attr-defined]

        channel = rtcdatachannel.RTCDataChannel
        ready = channel._setReadyState

        def set_ready(self: Any, state: str) -> None:
            probe.log("channel", state=state, label=self.label)
            ready(self, state)

        channel._setReadyState = set_ready  # type: ignore[method-assign]

    def install_http_client(self) -> None:
        import aiohttp

        probe = self
        init = aiohttp.ClientSession.__init__

        async def start(_: Any, __: Any, params: Any) -> None:
            probe.log("http", step="request", path=params.url.path)

        async def end(_: Any, __: Any, params: Any) -> None:
            probe.log("http", step="response", path=params.url.path, status=params.response.status)

        async def conn_start(_: Any, __: Any, params: Any) -> None:
            probe.log("http", step="connect")

        async def conn_end(_: Any, __: Any, params: Any) -> None:
            probe.log("http", step="connected")

        def session_init(self: Any, *args: Any, **kwargs: Any) -> None:
            trace = aiohttp.TraceConfig()
            trace.on_request_start.append(start)
            trace.on_request_end.append(end)
            trace.on_connection_create_start.append(conn_start)
            trace.on_connection_create_end.append(conn_end)
            kwargs["trace_configs"] = [*kwargs.get("trace_configs", []), trace]
            init(self, *args, **kwargs)

        aiohttp.ClientSession.__init__ = session_init  # type: ignore[method-assign]

    def install_gateway(self) -> None:
        from gateway.webrtc import setup_copies
        from gateway.webrtc.browser_peer import BrowserPeer

        probe = self
        copy = setup_copies.SetupCopier._send_copy

        def send_copy(self: Any, protocol: Any, data: bytes, addr: Any) -> None:
            probe.log("copy", h=hashlib.sha1(data).hexdigest()[:12], size=len(data))
            copy(self, protocol, data, addr)

        setup_copies.SetupCopier._send_copy = send_copy  # type: ignore[method-assign]
        accept = BrowserPeer.accept

        async def accepting(self: Any, offer_sdp: str) -> str:
            probe.log("accept", step="offer")
            try:
                return await accept(self, offer_sdp)
            finally:
                probe.log("accept", step="answer")

        BrowserPeer.accept = accepting  # type: ignore[method-assign]

    def dump(self) -> None:
        path = os.environ.get(OUT_ENV)
        if path:
            with open(path, "a") as out:
                for event in self.events:
                    out.write(json.dumps(event) + "\n")
            self.events.clear()


def run_role(role: str, argv: list[str], client_copies: int = 0, settings: dict[str, Any] | None = None) -> None:
    """``role`` is ``gateway`` (serve_gateway, with more ``settings`` of its Config) or ``client``
    (call_client), probed."""
    from gateway.webrtc.transport_timers import check_timer_internals

    check_timer_internals()  # on aiortc's own code, before the probe wraps it (the check is done once)
    probe = Probe(role)
    probe.install()
    sys.argv = [role, *argv]
    if role == "gateway":
        probe.install_gateway()
        from tests.netbed import serve_gateway
        config = serve_gateway.gateway_config
        serve_gateway.gateway_config = lambda **kw: config(**{**kw, **(settings or {})})  # type: ignore[assignment]
        try:
            asyncio.run(serve_gateway.main())
        finally:
            probe.dump()
    else:
        probe.install_http_client()
        from gateway.webrtc.transport_timers import TransportTimers, tune_transport_timers
        from tests.netbed import call_client
        call_client.tune_transport_timers = lambda pc, *_: tune_transport_timers(  # type: ignore[assignment]
            pc, TransportTimers(setup_copies=client_copies))
        try:
            asyncio.run(call_client.main())
        finally:
            probe.dump()


# --- analysis ---------------------------------------------------------------------------------


def first(events: list[dict[str, Any]], side: str, ev: str, **match: Any) -> float | None:
    for event in events:
        if event["side"] == side and event["ev"] == ev and all(event.get(k) == v for k, v in match.items()):
            return float(event["t"])
    return None


def analyse(events: list[dict[str, Any]]) -> dict[str, Any]:
    """One set-up's milestones, phase lengths and the datagrams each phase lost."""
    events.sort(key=lambda e: e["t"])
    t0 = first(events, "client", "http", step="request", path="/v1/realtime/calls")
    if t0 is None:
        return {"failed": "no POST"}
    marks = {
        "http": [first(events, "client", "http", step="response", path="/v1/realtime/calls")],
        "ice": [first(events, "client", "ice", state="completed"), first(events, "gateway", "ice", state="completed")],
        "dtls": [first(events, "client", "dtls", state="connected"), first(events, "gateway", "dtls", state="connected")],
        "sctp": [first(events, "client", "sctp", state="established"), first(events, "gateway", "sctp", state="established")],
        "dcep": [first(events, "client", "channel", state="open", label="oai-events")],
    }
    result: dict[str, Any] = {"t0": t0, "marks": {}, "phases": {}, "lost": {}, "sent": {}}
    previous = t0
    ends = {}
    for phase in PHASES:
        times = marks[phase]
        if any(t is None for t in times):
            result["failed"] = f"no {phase}"
            return result
        end = max(previous, *[t for t in times if t is not None])
        result["phases"][phase] = end - previous
        result["marks"][phase] = [round(t - t0, 3) for t in times if t is not None]
        ends[phase] = end
        previous = end
    result["total"] = previous - t0
    # datagrams: a digest sent by one side and not received by the other was dropped; a copy
    # received is the latest copy sent before it (resends of a flight are byte for byte the same)
    arrivals: dict[tuple[str, str], list[float]] = {}
    for event in events:
        if event["ev"] == "rx":
            arrivals.setdefault((event["side"], event["h"]), []).append(event["t"])
    sends: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in events:
        if event["ev"] == "tx":
            event["arrived"] = False
            other = "gateway" if event["side"] == "client" else "client"
            sends.setdefault((other, event["h"]), []).append(event)
    for key, times in arrivals.items():
        for arrival in times:
            copies = [e for e in sends.get(key, []) if e["t"] < arrival and not e["arrived"]]
            if copies:
                copies[-1]["arrived"] = True
    starts = [t0, *[ends[p] for p in PHASES]]
    for event in events:  # (the logs end at the channel's opening: later arrivals are not seen)
        if event["ev"] != "tx" or event["what"] == "SRTP" or event["t"] > previous - 0.15:
            continue
        phase = next((p for p, end in zip(PHASES, starts[1:], strict=True) if event["t"] <= end), PHASES[-1])
        key = f"{phase} {'c>g' if event['side'] == 'client' else 'g>c'}"
        result["sent"][key] = result["sent"].get(key, 0) + 1
        if not event["arrived"]:
            result["lost"][key] = result["lost"].get(key, 0) + 1
    result["datagrams"] = {side: sum(1 for e in events if e["side"] == side and e["t"] <= previous and (
        e["ev"] == "copy" or (e["ev"] == "tx" and e["what"] != "SRTP"))) for side in ("client", "gateway")}
    result["copies"] = sum(1 for e in events if e["ev"] == "copy" and e["t"] <= previous)
    result["events"] = events
    return result


def waterfall(result: dict[str, Any]) -> str:
    t0 = result["t0"]
    lines = [f"  total {result['total']:.2f} s; phases " + ", ".join(f"{p} {v:.2f}" for p, v in result["phases"].items())]
    for event in result["events"]:
        if event["ev"] == "rx" or event.get("what") == "SRTP" or event["t"] - t0 > result["total"] + 0.01:
            continue
        if event["t"] < t0 - 0.01 and event["ev"] != "http":
            continue
        at = f"{1000 * (event['t'] - t0):7.0f} ms {event['side']:<7}"
        if event["ev"] == "tx":
            arrow = "→" if event["side"] == "client" else "←"
            lost = "" if event.get("arrived") else "   LOST"
            lines.append(f"{at} {arrow} {event['what']} ({event['size']} B){lost}")
        elif event["ev"] in ("ice", "dtls", "sctp", "channel"):
            lines.append(f"{at}   [{event['ev']} {event.get('state')}]")
        elif event["ev"] in ("http", "accept"):
            lines.append(f"{at}   ({event['ev']} {event.get('step')} {event.get('path', '')})")
    return "\n".join(lines)




def run_setups(bed: Any, count: int, tmp: Path, *, settings: dict[str, Any] | None = None,
               gateway_args: Sequence[str] = (), client_args: Sequence[str] = ("--tuned-timers",),
               client_copies: int = 0) -> tuple[list[dict[str, Any]], list[str]]:
    """``count`` set-ups one after the other across ``bed`` (a :class:`tests.netbed.bed.NetBed`)
    against one probed gateway; returns each one's :func:`analyse` and why any failed."""
    gateway_log = tmp / "gateway.jsonl"
    setting_args = [part for name, value in (settings or {}).items() for part in ("--setting", f"{name}={json.dumps(value)}")]
    server = bed.python(bed.server, "tests.netbed.setup_probe", "--role", "gateway", "--host", bed.server.address,
                        "--results", str(tmp), *gateway_args, *setting_args, env={**os.environ, OUT_ENV: str(gateway_log)})
    url = json.loads(server.wait_for_line(r'^\{"url"', timeout=60).string)["url"]
    client_logs = []
    for index in range(count):
        log = tmp / f"client-{index}.jsonl"
        client = bed.python(bed.client, "tests.netbed.setup_probe", "--role", "client", "--client-copies",
                            str(client_copies), "--url", url, "--setup-only", *client_args,
                            env={**os.environ, OUT_ENV: str(log)})
        code = client.wait(timeout=90)
        client_logs.append((log, code, client.stderr[-300:] if code else ""))
    server.stop(timeout=30)
    gateway_events = [json.loads(line) for line in gateway_log.read_text().splitlines()] if gateway_log.exists() else []
    results, failed = [], []
    for log, code, stderr in client_logs:
        if code != 0 or not log.exists():
            failed.append(f"client exit {code}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")
            continue
        events = [json.loads(line) for line in log.read_text().splitlines()]
        start, end = events[0]["t"] - 0.05, events[-1]["t"] + 0.05
        result = analyse(events + [e for e in gateway_events if start <= e["t"] <= end])
        if "failed" in result:
            failed.append(result["failed"])
        results.append(result)
    return results, failed


def main() -> None:
    role, copies, rest, settings = None, 0, [], {}
    argv = iter(sys.argv[1:])
    for arg in argv:
        if arg == "--role":
            role = next(argv)
        elif arg == "--client-copies":
            copies = int(next(argv))
        elif arg == "--as-before":  # the gateway's set-up before copies, DTLS server and RTT timers
            settings.update(setup_copies=0, dtls_role="client")
            from gateway.webrtc.transport_timers import RoundTrip
            RoundTrip.timeout = lambda self, floor, ceiling: floor  # type: ignore[method-assign]
        elif arg == "--setting":  # name=JSON value, e.g. setup_copies=0 or dtls_role="client"
            name, value = next(argv).split("=", 1)
            settings[name] = json.loads(value)
        else:
            rest.append(arg)
    if role not in ("gateway", "client"):
        raise SystemExit("--role gateway|client")
    run_role(role, rest, copies, settings)


if __name__ == "__main__":
    main()


# --- real Chromium as the browser ---------------------------------------------------------------

CHROMIUM_PAGE = """<!doctype html><meta charset="utf-8"><title>set-up</title><script>
window.setUp = async () => {
  const now = () => performance.timeOrigin + performance.now();
  const t = {};
  const secret = await (await fetch('/v1/realtime/client_secrets', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: '{}'})).json();
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const pc = new RTCPeerConnection();
  pc.addTrack(stream.getAudioTracks()[0], stream);
  const channel = pc.createDataChannel('oai-events');
  const opened = new Promise((resolve) => { channel.onopen = () => resolve(now()); });
  const event = new Promise((resolve) => { channel.onmessage = () => resolve(now()); });
  pc.oniceconnectionstatechange = () => { if (pc.iceConnectionState === 'connected') t.ice ??= now(); };
  pc.onconnectionstatechange = () => { if (pc.connectionState === 'connected') t.connected ??= now(); };
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    setTimeout(resolve, 2000);
  });
  t.post = now();
  const response = await fetch('/v1/realtime/calls', {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + secret.value}});
  const answer = await response.text();
  t.answer = now();
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  t.open = await Promise.race([opened, new Promise((r) => setTimeout(() => r(null), 30000))]);
  t.event = await Promise.race([event, new Promise((r) => setTimeout(() => r(null), 5000))]);
  const stats = await pc.getStats();
  stats.forEach((s) => { if (s.type === 'transport') { t.dtls = s.tlsVersion; t.role = s.dtlsRole; t.cipher = s.dtlsCipher; } });
  t.setup = /a=setup:(\\w+)/.exec(answer)?.[1];
  pc.close();
  stream.getTracks().forEach((track) => track.stop());
  return t;
};
</script>"""


async def chromium_setups(bed: Any, count: int, tmp: Path, settings: dict[str, Any] | None = None,
                          gateway_args: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """``count`` set-ups by real headless Chromium (Debian's, in the bed's client namespace through
    ``ip netns exec``; Playwright drives it over a pipe) against one probed gateway. Each result
    has the page's times (ms of the wall clock: post, answer, ice, connected, open, first event)
    and the gateway's milestones (ICE, DTLS, SCTP), in s after the POST."""
    from playwright.async_api import async_playwright

    gateway_log = tmp / "gateway.jsonl"
    setting_args = [part for name, value in (settings or {}).items() for part in ("--setting", f"{name}={json.dumps(value)}")]
    server = bed.python(bed.server, "tests.netbed.setup_probe", "--role", "gateway", "--host", bed.server.address,
                        "--results", str(tmp), *gateway_args, *setting_args, env={**os.environ, OUT_ENV: str(gateway_log)})
    url = json.loads((await server.wait_for_line_async(r'^\{"url"', timeout=60)).string)["url"]
    wrapper = tmp / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {bed.client.namespace} /usr/bin/chromium "$@"\n')
    wrapper.chmod(0o755)
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--unsafely-treat-insecure-origin-as-secure={url}",  # getUserMedia, local fetches
             "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"]
    pages: list[dict[str, Any]] = []
    failed: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(wrapper), args=flags, headless=True)
        try:
            for _ in range(count):
                context = await browser.new_context(permissions=["microphone"])
                page = await context.new_page()
                await page.route(f"{url}/__setup.html", lambda route: route.fulfill(body=CHROMIUM_PAGE,
                                                                                     content_type="text/html"))
                await page.goto(f"{url}/__setup.html")
                try:
                    times = await page.evaluate("window.setUp()")
                except Exception as exc:  # the page's promise failed: count it, go on
                    failed.append(str(exc).splitlines()[0][:120])
                    times = None
                await context.close()
                if times:
                    pages.append(times)
                await asyncio.sleep(0.5)
        finally:
            await browser.close()
    server.stop(timeout=30)
    gateway_events = [json.loads(line) for line in gateway_log.read_text().splitlines()] if gateway_log.exists() else []
    results = []
    for times in pages:
        if not times.get("open"):
            failed.append("channel never opened")
            continue
        t0 = times["post"] / 1000
        mine = [e for e in gateway_events if t0 - 0.05 <= e["t"] <= times["open"] / 1000 + 0.5]
        marks = {name: (times[name] / 1000 - t0) for name in ("answer", "ice", "connected", "open", "event")
                 if times.get(name)}
        for name, ev, state in (("gw_ice", "ice", "completed"), ("gw_dtls", "dtls", "connected"),
                                ("gw_sctp", "sctp", "established"), ("gw_channel", "channel", "open")):
            when = first(mine, "gateway", ev, state=state)
            if when is not None:
                marks[name] = when - t0
        results.append({"marks": marks, "page": times, "events": mine, "t0": t0,
                        "copies": sum(1 for e in mine if e["ev"] == "copy" and e["t"] <= times["open"] / 1000),
                        "gateway_sent": sum(1 for e in mine if e["ev"] in ("tx", "copy") and e.get("what") != "SRTP"
                                            and e["t"] <= times["open"] / 1000),
                        "gateway_received": sum(1 for e in mine if e["ev"] == "rx" and e.get("what") != "SRTP"
                                                and e["t"] <= times["open"] / 1000)})
    return results, failed
