"""The production ``turn/turnserver.conf``, run by a real coturn with only addresses, secret
and certificate replaced: TLS relays work, and the relay refuses to reach internal addresses
unless the documented override names them."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from gateway.webrtc.turn_credentials import mint
from tests.turn_server import TurnServer, start_turnserver

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "turn" / "turnserver.conf"
# Where a relay may send, seen from a TURN server: one public address, and what must stay out of
# reach (private networks, CGNAT, the cloud metadata service, loopback).
PEERS = {"1.2.3.4": "relayed", "10.1.1.1": "refused (403)", "172.16.1.1": "refused (403)",
         "192.168.1.1": "refused (403)", "100.64.1.1": "refused (403)", "169.254.169.254": "refused (403)",
         "127.0.0.1": "refused (403)"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class Receiver(asyncio.DatagramProtocol):
    """Either side of a relay: keeps datagrams and errors."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


async def relay_to_loopback(server: TurnServer, cert: Path) -> tuple[Receiver, Receiver]:
    """Allocate over TLS (turns:) and send one datagram through the relay to a loopback peer."""
    loop = asyncio.get_running_loop()
    peer_transport, peer = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    credential = mint(server.secret, "conf_test", 600)
    context = ssl.create_default_context(cafile=str(cert))
    assert server.tls_port is not None
    relay, client = await create_turn_endpoint(Receiver, ("127.0.0.1", server.tls_port), credential.username,
                                               credential.password, ssl=context, transport="tcp")
    try:
        relay.sendto(b"hello internal network", peer_transport.get_extra_info("sockname"))
        for _ in range(40):
            if peer.received or client.errors:
                break
            await asyncio.sleep(0.05)
    finally:
        relay.close()
        peer_transport.close()
    return peer, client


@pytest.mark.parametrize("override", [False, True], ids=["as shipped", "allowed-peer-ip override"])
async def test_production_config_never_relays_into_internal_networks(
        tmp_path: Path, certificate: tuple[Path, Path], override: bool) -> None:
    # allow-loopback-peers lifts coturn's built-in loopback ban, so only the file's own
    # denied-peer-ip lines stand between the relay and 127.0.0.1 (as they do for 10/8 etc.).
    extra = ["allow-loopback-peers"] + (["allowed-peer-ip=127.0.0.1"] if override else [])
    server = start_turnserver(tmp_path, conf=CONF, conf_add=extra, cert=certificate)
    try:
        peer, client = await relay_to_loopback(server, certificate[0])
    finally:
        server.stop()
    if override:
        assert peer.received == [b"hello internal network"] and not client.errors
    else:
        assert peer.received == []
        (refusal,) = client.errors
        assert isinstance(refusal, stun.TransactionFailed) and refusal.response.error_code == 403
        assert "403" in server.log_text()
    assert "ALLOCATE processed, success" in server.log_text()  # over TLS, with a minted credential


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_production_config_serves_tls_1_2_and_nothing_older(tmp_path: Path,
                                                                  certificate: tuple[Path, Path]) -> None:
    # coturn 4.6.1 (Debian 12) speaks no TLS 1.3 yet (4.6.2 does): TLS 1.2 is what browsers get.
    server = start_turnserver(tmp_path, conf=CONF, cert=certificate)
    try:
        modern = ssl.create_default_context(cafile=str(certificate[0]))
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.tls_port, ssl=modern), 5)
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        assert writer.get_extra_info("cipher")[0].startswith("ECDHE-")  # forward secrecy only
        writer.close()

        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(certificate[0]))
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        # coturn does not answer a TLS 1.1 hello at all (no alert): the handshake never completes.
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.TimeoutError)):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.tls_port, ssl=old), 2)
    finally:
        server.stop()


async def test_production_config_relays_to_public_peers_and_nowhere_else() -> None:
    """In a network namespace of its own, where 1.2.3.4 can be a local "public" peer."""
    process = await asyncio.create_subprocess_exec(
        "unshare", "--net", sys.executable, "-m", "tests.webrtc.test_turn_config", str(CONF), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-3000:]
    assert json.loads(out.decode().splitlines()[-1]) == PEERS


async def _relay_to_every_peer(conf: Path) -> dict[str, str]:
    """Runs inside ``unshare --net``: coturn from ``conf``, one allocation, one datagram per peer."""
    for address in PEERS:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    loop = asyncio.get_running_loop()
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as workdir:
        # allow-loopback-peers lifts coturn's own loopback ban: the file alone must keep 127/8 out.
        server = start_turnserver(Path(workdir), conf=conf, conf_add=["allow-loopback-peers"])
        try:
            credential = mint(server.secret, "conf_test", 600)
            relay, client = await create_turn_endpoint(Receiver, ("127.0.0.1", server.port), credential.username,
                                                       credential.password)
            for address in PEERS:
                peer_transport, peer = await loop.create_datagram_endpoint(Receiver, local_addr=(address, 0))
                client.errors.clear()
                relay.sendto(b"hello", peer_transport.get_extra_info("sockname"))
                for _ in range(40):
                    if peer.received or client.errors:
                        break
                    await asyncio.sleep(0.025)
                peer_transport.close()
                codes = [e.response.error_code for e in client.errors if isinstance(e, stun.TransactionFailed)]
                results[address] = "relayed" if peer.received else f"refused ({codes[0]})" if codes else "lost"
            relay.close()
        finally:
            server.stop()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_relay_to_every_peer(Path(sys.argv[1])))))
