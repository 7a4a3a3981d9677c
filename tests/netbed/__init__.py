"""Lossy-network test bed: hosts in network namespaces behind a delaying relay and nftables drops.

See README.md in this directory. Typical use from a test::

    from tests.netbed import NetBed

    def test_something() -> None:
        with NetBed() as bed:
            bed.set_delay(50, jitter_ms=20)
            bed.set_loss(10)
            server = bed.python(bed.server, "gateway", "--host", bed.server.address)
"""

from .bed import NetBed
from .cleanup import cleanup_leftovers
from .firewall import Counters
from .host import Host
from .link import LinkSettings
from .probe import ProbeResult, measure_udp, tcp_connects
from .process import NetProcess, ProcessError
from .system import NetbedUnavailable, require, unavailable_reason

__all__ = ["NetBed", "Host", "NetProcess", "ProcessError", "LinkSettings", "Counters", "ProbeResult",
           "measure_udp", "tcp_connects", "cleanup_leftovers", "require", "unavailable_reason",
           "NetbedUnavailable"]
