"""Packet drops on arrival at a host, with nftables in the namespace's *input* hook.

Input, not output: a drop in the output hook makes the sender's ``sendto()`` fail with EPERM, which
no real network does; dropped on arrival, the sender never knows, as with a lossy radio link.
Each change replaces the chain's rules in one ``nft -f`` transaction, so there is no instant with
no rule or with two. A counting rule first tallies every packet arriving from outside, so a test
can check the drops it asked for actually happened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .system import sh

TABLE = "inet netbed"
SETUP = f"""add table {TABLE}
add chain {TABLE} input {{ type filter hook input priority -10 ; policy accept ; }}
"""


@dataclass(frozen=True)
class DropRules:
    """What a host's input hook drops: ``loss_percent`` of UDP (of everything with ``tcp``), or all of it."""

    loss_percent: float = 0.0
    tcp: bool = False
    cut: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.loss_percent <= 100:
            raise ValueError(f"loss must be within 0..100 %, got {self.loss_percent}")

    def script(self) -> str:
        """The nft transaction that installs these rules (resolution 0.01 %)."""
        outside = 'iifname != "lo"'
        lines = [f"flush chain {TABLE} input", f'add rule {TABLE} input {outside} counter comment "arrived"']
        if self.cut:
            lines.append(f'add rule {TABLE} input {outside} counter drop comment "dropped"')
        elif self.loss_percent > 0:
            protocol = "" if self.tcp else "meta l4proto udp "
            threshold = round(self.loss_percent * 100)
            chance = f"numgen random mod 10000 < {threshold} " if threshold < 10000 else ""
            lines.append(f'add rule {TABLE} input {outside} {protocol}{chance}counter drop comment "dropped"')
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Counters:
    """Packets that reached the host's input hook from outside, and how many of them were dropped."""

    arrived: int
    dropped: int


class Firewall:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.rules = DropRules()

    def _nft(self, *args: str, script: str | None = None) -> str:
        return sh("ip", "netns", "exec", self.namespace, "nft", *args, input=script).stdout

    def install(self) -> None:
        self._nft("-f", "-", script=SETUP + self.rules.script())

    def apply(self, rules: DropRules) -> None:
        self._nft("-f", "-", script=rules.script())
        self.rules = rules

    def counters(self) -> Counters:
        """Counts since the last :meth:`apply` (each change starts fresh counters)."""
        listing = json.loads(self._nft("-j", "list", "chain", *TABLE.split(), "input"))
        counts = {"arrived": 0, "dropped": 0}
        for item in listing["nftables"]:
            rule = item.get("rule")
            if rule and rule.get("comment") in counts:
                for expression in rule["expr"]:
                    if "counter" in expression:
                        counts[rule["comment"]] = expression["counter"]["packets"]
        return Counters(**counts)
