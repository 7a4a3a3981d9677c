"""Several gateway instances, each in a network namespace of its own, behind a real nginx, with a real Redis.

Topology: a bridge on the host (``10.213.<n>.1/24``) and one veth per instance into its namespace
(``10.213.<n>.1<i>``, port 8000). redis-server listens on the bridge address, nginx on loopback
(the shipped ``deploy/nginx/realtime-gateway.conf``, and a plain round-robin front beside it).
Used by tests/cluster and by ``scripts/cluster`` for development. Needs root, ``ip``, nginx and
redis-server (``scripts/setup_cluster.sh``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "realtime-gateway.conf"
GATEWAY_SECRET = "cluster-test-secret-0123456789abcdef"
INSTANCE_PORT = 8000


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the cluster bed needs root (network namespaces, a bridge)"
    for tool in ("ip", "nginx", "redis-server"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"`{tool}` is not installed (scripts/setup_cluster.sh installs nginx and redis-server)"
    return None


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class Instance:
    name: str
    namespace: str
    address: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{INSTANCE_PORT}"


@dataclass
class ClusterBed:
    """``with ClusterBed(tmp, 3, upstream_url=...) as bed``: ``bed.front`` (nginx, routing by id),
    ``bed.round_robin`` (nginx, plain round robin), ``bed.instances``."""

    workdir: Path
    count: int = 3
    upstream_url: str | None = None  # None: each instance runs the built-in offline engine
    flags: tuple[str, ...] = ()
    two_workers_first: bool = True  # gw-0 runs two worker processes (their own forwarding inside)
    instances: list[Instance] = field(default_factory=list)
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}")

    def __post_init__(self) -> None:
        self.subnet = f"10.213.{os.getpid() % 250}"
        self.bridge_address = f"{self.subnet}.1"
        self.bridge = f"gwcb{self.tag}"[:15]
        self.redis_port = free_port()
        self.front_port = free_port()
        self.round_robin_port = free_port()
        self._redis: subprocess.Popen[bytes] | None = None
        self._nginx: subprocess.Popen[bytes] | None = None

    @staticmethod
    def media_ports(index: int) -> tuple[int, int]:
        """Instance ``index``'s UDP range (per network namespace, as on a host of its own)."""
        return 40000 + 1000 * index, 40999 + 1000 * index

    @property
    def front(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def round_robin(self) -> str:
        return f"http://127.0.0.1:{self.round_robin_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.bridge_address}:{self.redis_port}/0"

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> ClusterBed:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self.open_network()
        self.open_services()

    def open_network(self) -> None:
        """The bridge and the namespaces (before anything listens on the bridge)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        for index in range(self.count):
            namespace, veth = f"gwc{self.tag}-{index}", f"gwcv{self.tag}{index}"[:15]
            instance = Instance(f"gw-{index}", namespace, f"{self.subnet}.{10 + index}")
            _sh("ip", "netns", "add", namespace)
            self.instances.append(instance)
            _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _sh("ip", "link", "set", veth, "master", self.bridge, "up")
            for argv in (["ip", "addr", "add", f"{instance.address}/24", "dev", "eth0"],
                         ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"],
                         ["ip", "route", "add", "default", "via", self.bridge_address],
                         # the media ports: aioice binds port 0, the kernel picks from this range
                         ["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={self.media_ports(index)[0]} "
                                                f"{self.media_ports(index)[1]}"]):
                _sh("ip", "netns", "exec", namespace, *argv)

    def open_services(self) -> None:
        """Redis, the instances and nginx, once every instance listens."""
        self.start_redis()
        for instance in self.instances:
            self.start(instance)
        self._start_nginx()
        for instance in self.instances:
            self.wait_ready(instance)

    def close(self) -> None:
        for instance in self.instances:
            self.kill(instance)
        for process in (self._nginx, self._redis):  # nginx's master takes its workers with it on TERM
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        for instance in self.instances:
            _sh("ip", "netns", "del", instance.namespace, check=False)
        _sh("ip", "link", "del", self.bridge, check=False)

    # --- parts ----------------------------------------------------------------------------------

    def start_redis(self) -> None:
        self._redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", self.bridge_address, "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.bridge_address, self.redis_port)

    def stop_redis(self) -> None:
        assert self._redis is not None
        self._redis.kill()
        self._redis.wait(10)

    def argv(self, instance: Instance) -> list[str]:
        upstream = ["--upstream", "url", "--upstream-url", self.upstream_url, "--openai-api-key",
                    "sk-test-upstream-key"] if self.upstream_url else ["--upstream", "local"]
        workers = "2" if instance.name == "gw-0" and self.two_workers_first else "1"
        return ["ip", "netns", "exec", instance.namespace, sys.executable, "-m", "gateway", "--workers", workers,
                "--host", "0.0.0.0", "--port", str(INSTANCE_PORT), "--instance-id", instance.name,
                "--gateway-secret", GATEWAY_SECRET, "--redis-url", self.redis_url,
                "--advertise-url", instance.url, "--trusted-proxies", f"{self.subnet}.0/24",
                "--event-loop", "asyncio", *upstream, *self.flags]

    def start(self, instance: Instance) -> None:
        instance.log = self.workdir / f"{instance.name}.log"
        with instance.log.open("ab") as log:
            instance.process = subprocess.Popen(self.argv(instance), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_ready(self, instance: Instance, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert instance.process is not None and instance.process.poll() is None, self.log_of(instance)
            try:
                with socket.create_connection((instance.address, INSTANCE_PORT), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{instance.name} did not listen: {self.log_of(instance)}")

    def log_of(self, instance: Instance) -> str:
        return instance.log.read_text()[-3000:] if instance.log and instance.log.exists() else ""

    def kill(self, instance: Instance, signum: int = signal.SIGKILL) -> None:
        if instance.process is not None and instance.process.poll() is None:
            instance.process.send_signal(signum)
            if signum == signal.SIGKILL:
                instance.process.wait(10)

    def _start_nginx(self) -> None:
        conf_dir = self.workdir / "nginx"
        (conf_dir / "realtime-gateway").mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"    server {i.address}:{INSTANCE_PORT} max_fails=0;"
                            for i in self.instances)
        upstreams = "".join(f"upstream gw_{i.name} {{ server {i.address}:{INSTANCE_PORT}; }}\n" for i in self.instances)
        (conf_dir / "realtime-gateway" / "instances.conf").write_text(
            f"upstream gw_any {{\n    least_conn;\n{servers}\n}}\n"
            f"upstream gw_mint {{\n    least_conn;\n{servers}\n}}\n{upstreams}"
            f"upstream gw_round_robin {{\n{servers}\n}}\n")
        (conf_dir / "realtime-gateway" / "instances.map").write_text(
            "".join(f"{i.name} gw_{i.name};\n" for i in self.instances))
        shipped = NGINX_CONF.read_text().replace("/etc/nginx/realtime-gateway/", f"{conf_dir}/realtime-gateway/")
        shipped = shipped.replace("listen 8080;", f"listen 127.0.0.1:{self.front_port};")
        assert str(self.front_port) in shipped and str(conf_dir) in shipped, "the shipped nginx file changed shape"
        (conf_dir / "realtime-gateway.conf").write_text(shipped)
        temp = {name: conf_dir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir(exist_ok=True)
        (conf_dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {conf_dir}/nginx.pid;
error_log {conf_dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    include {conf_dir}/realtime-gateway.conf;
    server {{  # a front that knows nothing of ids: the instances forward to each other
        listen 127.0.0.1:{self.round_robin_port};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;  # sidebands: any instance pipes them to the owner
            proxy_set_header Connection $gw_connection;
            proxy_read_timeout 3600s;
            proxy_pass http://gw_round_robin;
        }}
    }}
}}
""")
        check = _sh("nginx", "-t", "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir), check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {check.stderr}")
        self._nginx = subprocess.Popen(["nginx", "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir),
                                        "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port("127.0.0.1", self.front_port)
        _wait_port("127.0.0.1", self.round_robin_port)


def main() -> None:
    """``scripts/cluster --instances 3``: a cluster for development, until Ctrl-C."""
    import argparse
    import tempfile
    import threading
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--upstream-url", default=None,
                        help="a Realtime ws:// URL the instances can reach (default: each runs the offline engine)")
    parser.add_argument("flags", nargs="*", help="more gateway flags for every instance (after --)")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"scripts/cluster: {reason}")
    with tempfile.TemporaryDirectory(prefix="gateway-cluster-") as workdir:
        bed = ClusterBed(Path(workdir), args.instances, upstream_url=args.upstream_url, flags=tuple(args.flags))
        with bed:
            print(f"front (nginx, routing by id): {bed.front}")
            print(f"front (plain round robin):    {bed.round_robin}")
            print(f"redis: {bed.redis_url}")
            for index, instance in enumerate(bed.instances):
                low, high = bed.media_ports(index)
                print(f"  {instance.name}: {instance.url} (netns {instance.namespace}, UDP {low}-{high}, "
                      f"log {instance.log})")
            print("Ctrl-C tears it all down.", flush=True)
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            while not stop.wait(1):
                pass


if __name__ == "__main__":
    main()
