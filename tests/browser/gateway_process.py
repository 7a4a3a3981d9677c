"""The gateway as a separate process (`python -m gateway`), for what only a process can show a
browser: a restart (SIGTERM), a crash (SIGKILL), https with a certificate."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.conftest import free_port
from tests.fake_upstream import FakeRealtimeServer

from .conftest import ROOT, WEB


class GatewayProcess:
    """``async with GatewayProcess(fake_upstream, *flags) as gateway:`` → ``gateway.url``."""

    def __init__(self, upstream: FakeRealtimeServer, *flags: str, scheme: str = "http",
                 address: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"{scheme}://{address}:{self.port}"
        self._command = [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(self.port),
                         "--upstream", "url", "--upstream-url", upstream.url,
                         "--openai-api-key", upstream.behaviour.api_key or "unused",
                         "--web-root", str(WEB), "--rate-limit", "100000", *flags]
        self._process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "UPSTREAM", "UPSTREAM_URL")}
        self._process = subprocess.Popen(self._command, cwd=ROOT, env=env, start_new_session=True)
        for _ in range(200):
            assert self._process.poll() is None, "the gateway exited during start-up"
            if await asyncio.to_thread(self._healthy):
                return self
            await asyncio.sleep(0.1)
        raise AssertionError("the gateway did not start")

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            self.kill()
        await asyncio.to_thread(self._process.wait, 10)

    def _healthy(self) -> bool:
        context = ssl._create_unverified_context()  # our own self-signed test certificate
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1, context=context) as response:
                return response.status == 200
        except OSError:
            return False

    def terminate(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the supervisor and its workers at once, as when the machine dies: no goodbye."""
        assert self._process is not None
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def non_loopback_ip() -> str | None:
    """This machine's outbound IPv4 address: a page loaded from it is not "localhost"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; picks the outbound interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def self_signed_certificate(directory: Path, address: str) -> tuple[Path, Path]:
    """A certificate for ``address`` (what `TLS_CERT`/`TLS_KEY` point at in a real deployment)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
