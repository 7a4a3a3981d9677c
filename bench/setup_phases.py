"""Where a call's set-up spends its time on a lossy link: HTTP, ICE, DTLS, SCTP, the data channel.

    python bench/setup_phases.py [--setups 20] [--loss 20] [--delay 50] [--jitter 20]
                                 [--tcp-loss] [--stock-timers] [--client-timers tuned|stock]
                                 [--gateway-arg=--dtls-resend-initial-ms=250 …] [--waterfall N]
                                                                         (root: network namespaces)

One gateway (tests/netbed/serve_gateway.py) on the bed's server host, ``--setups`` aiortc clients
one after the other on the client host (tests/netbed/call_client.py ``--setup-only``; by default
with the browser-like fast timers), ``--loss`` % of UDP dropped on arrival at each host
(``--tcp-loss``: TCP too, so the signalling's SYNs and segments). Both processes log every
datagram they send and receive at the ICE socket with the wall clock (all hosts share it), what
it carried (STUN request/response and USE-CANDIDATE; DTLS record types and handshake messages;
the SCTP chunks inside application data, DCEP OPEN/ACK) and the transports' state changes.
A datagram one side sent that the other never received was dropped by the bed.

Printed: per phase (each ends when its last milestone is reached, so the phases add up to the
total), p50 / p90 / max over the set-ups, with the datagrams of that phase lost each way and the
resends; then ``--waterfall`` set-ups in full (the slowest first).

Phases: **http** client's POST /v1/realtime/calls → its answer; **ice** → both ICE agents
completed (the gateway is controlled: its DTLS starts only then); **dtls** → both DTLS transports
connected; **sctp** → both associations established; **dcep** → the client's channel open (the
gateway's DATA_CHANNEL_ACK arrived; Chromium opens on sending OPEN instead).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netbed.bed import NetBed  # noqa: E402
from tests.netbed.setup_probe import PHASES, chromium_setups, run_setups, waterfall  # noqa: E402


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(ordered):.2f} / {p90:.2f} / {max(ordered):.2f}"


def report(results: list[dict[str, Any]], failed: list[str]) -> str:
    ok = [r for r in results if "failed" not in r]
    if not ok:
        return f"no set-up completed: {failed}"
    lines = ["| phase | p50 / p90 / max s | mean s | datagrams lost c>g / g>c (sent), all set-ups |", "|---|---|---|---|"]
    for phase in PHASES:
        values = [r["phases"][phase] for r in ok]
        lost = [sum(r["lost"].get(f"{phase} {d}", 0) for r in ok) for d in ("c>g", "g>c")]
        sent = [sum(r["sent"].get(f"{phase} {d}", 0) for r in ok) for d in ("c>g", "g>c")]
        lines.append(f"| {phase} | {quantiles(values)} | {statistics.mean(values):.2f} | "
                     f"{lost[0]} ({sent[0]}) / {lost[1]} ({sent[1]}) |")
    sent = {side: [r["datagrams"][side] for r in ok] for side in ("client", "gateway")}
    lines.append(f"| datagrams sent until open (STUN, DTLS, SCTP; gateway's incl. copies) | client "
                 f"{statistics.median(sent['client']):.0f} (max {max(sent['client'])}), gateway "
                 f"{statistics.median(sent['gateway']):.0f} (max {max(sent['gateway'])}), copies "
                 f"{statistics.median(r['copies'] for r in ok):.0f} | | |")
    totals = [r["total"] for r in ok]
    lines.append(f"| **POST → channel open** | **{quantiles(totals)}** | {statistics.mean(totals):.2f} | "
                 f"{len(ok)} set-ups, {len(failed)} failed {failed[:2]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--setups", type=int, default=20)
    parser.add_argument("--loss", type=float, default=20)
    parser.add_argument("--delay", type=float, default=50)
    parser.add_argument("--jitter", type=float, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tcp-loss", action="store_true", help="drop TCP too (the signalling)")
    parser.add_argument("--burst", type=float, help="lose in runs of this many packets on average (relay)")
    parser.add_argument("--stock-timers", action="store_true", help="the gateway with aiortc's own timers")
    parser.add_argument("--before", action="store_true",
                        help="the gateway as before this bench: DTLS client, no copies, fixed first timeouts")
    parser.add_argument("--client-timers", choices=("tuned", "stock"), default="tuned")
    parser.add_argument("--gateway-arg", action="append", default=[], help="a tests/netbed/serve_gateway.py flag")
    parser.add_argument("--setting", action="append", default=[],
                        help='a gateway Config field, name=JSON: --setting setup_copies=0 --setting dtls_role=\'"client"\'')
    parser.add_argument("--waterfall", type=int, default=2, help="print this many set-ups in full, slowest first")
    parser.add_argument("--json", type=Path, help="write every set-up's analysis here")
    parser.add_argument("--client-copies", type=int, default=0, help="the client copies its set-up datagrams too")
    parser.add_argument("--chromium", action="store_true", help="real headless Chromium as the browser")
    args = parser.parse_args()
    if args.chromium:
        chromium_main(args)
        return
    settings = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.setting)}
    with tempfile.TemporaryDirectory() as tmp, NetBed(seed=args.seed) as bed:
        bed.set_delay(args.delay, jitter_ms=args.jitter)
        bed.set_loss(args.loss, tcp=args.tcp_loss, burst=args.burst)
        results, failed = run_setups(bed, args.setups, Path(tmp), settings=settings,
                                     gateway_args=[*(["--stock-timers"] if args.stock_timers else []),
                                                   *(["--as-before"] if args.before else []), *args.gateway_arg],
                                     client_args=["--tuned-timers"] if args.client_timers == "tuned" else [],
                                     client_copies=args.client_copies)
    print(f"set-up phases at {args.loss:g} % loss{' (TCP too)' if args.tcp_loss else ''}"
          f"{f' in runs of {args.burst:g}' if args.burst else ''}, {args.delay:g} ± "
          f"{args.jitter:g} ms each way; gateway {'stock' if args.stock_timers else 'before' if args.before else 'tuned'} "
          f"{' '.join(args.gateway_arg + args.setting)}; client {args.client_timers}; load {os.getloadavg()[0]:.1f}")
    print(report(results, failed))
    ok = sorted((r for r in results if "failed" not in r), key=lambda r: -r["total"])
    for result in ok[:args.waterfall]:
        print("\n" + waterfall(result))
    if args.json:
        args.json.write_text(json.dumps(results))


CHROMIUM_MARKS = (("answer", "POST → answer (page)"), ("gw_ice", "→ gateway ICE completed"),
                  ("ice", "→ page ICE connected"), ("gw_dtls", "→ gateway DTLS connected"),
                  ("connected", "→ page connected (DTLS)"), ("gw_sctp", "→ gateway SCTP established"),
                  ("open", "→ page channel open"), ("gw_channel", "→ gateway channel open (OPEN came)"),
                  ("event", "→ page's first event (session.created)"))


def chromium_main(args: argparse.Namespace) -> None:
    import asyncio

    settings = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.setting)}
    with tempfile.TemporaryDirectory() as tmp, NetBed(seed=args.seed) as bed:
        bed.set_delay(args.delay, jitter_ms=args.jitter)
        bed.set_loss(args.loss, tcp=args.tcp_loss, burst=args.burst)
        results, failed = asyncio.run(chromium_setups(bed, args.setups, Path(tmp), settings,
                                                      [*(["--stock-timers"] if args.stock_timers else []),
                                                       *(["--as-before"] if args.before else [])]))
    gateway = "stock" if args.stock_timers else "before" if args.before else "tuned"
    print(f"Chromium set-ups at {args.loss:g} % loss, {args.delay:g} ± {args.jitter:g} ms each way; gateway "
          f"{gateway} {' '.join(args.setting)}; load {os.getloadavg()[0]:.1f}; "
          f"DTLS {sorted({(r['page'].get('dtls'), r['page'].get('role'), r['page'].get('setup')) for r in results}, key=str)}")
    print("| milestone (s after the POST) | p50 / p90 / max |\n|---|---|")
    for key, name in CHROMIUM_MARKS:
        values = [r["marks"][key] for r in results if key in r["marks"]]
        if values:
            print(f"| {name} | {quantiles(values)} ({len(values)}) |")
    if results:
        print(f"| gateway datagrams sent until open (with copies) | {statistics.median(r['gateway_sent'] for r in results):.0f}"
              f" (copies {statistics.median(r['copies'] for r in results):.0f}), received "
              f"{statistics.median(r['gateway_received'] for r in results):.0f} |")
    print(f"{len(results)} set-ups, {len(failed)} failed {failed[:3]}")
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
