"""A real SeaweedFS cluster on loopback: one master, several volume servers, a filer and the S3 gateway.

Why not ``weed mini``: the stores users run on the air-gapped side are clusters, where a volume
server can die while its peers keep serving replicas, and the S3 gateway can restart while the
data stays. Each component is its own process with its own folder, log and ports (gRPC = HTTP
port + 10000, which is also what each component assumes when it dials a peer), so a test can
kill or restart exactly one of them.

The handle has the same face as ``SeaweedServer`` (``endpoint``, ``credentials``, ``client``),
so ``make_source`` and ``Sides`` work on it unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .paths import venv_tool
from .processes import die_with_parent, log_tail, stop_process
from .seaweed import new_credentials, s3_client, write_identities

READY_BUCKET = "ready-probe"


def pick_port_pairs(count: int) -> list[int]:
    """``count`` HTTP ports on 127.0.0.1 whose ``port + 10000`` is free as well.

    Every probe socket stays bound until all pairs are chosen, so the pairs differ from each
    other; they are released just before the servers start.
    """
    socks: list[socket.socket] = []
    chosen: list[int] = []
    try:
        for _ in range(count * 200):
            if len(chosen) == count:
                break
            grpc = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            grpc.bind(("127.0.0.1", 0))
            socks.append(grpc)
            http_port = grpc.getsockname()[1] - 10000
            if http_port <= 1024:
                continue
            http = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                http.bind(("127.0.0.1", http_port))
            except OSError:
                http.close()
                continue
            socks.append(http)
            chosen.append(http_port)
        if len(chosen) < count:
            raise RuntimeError(f"found only {len(chosen)} of {count} free port pairs (p, p+10000) on 127.0.0.1")
        return chosen
    finally:
        for s in socks:
            s.close()


@dataclass
class Component:
    """One weed process: how to start it, and its log."""

    name: str
    argv: list[str]
    log_path: Path
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        stop_process(proc, timeout)

    def kill(self) -> None:
        """SIGKILL: the machine lost power, or the process was OOM-killed."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


@dataclass
class SeaweedCluster:
    """master + ``volumes`` volume servers + filer + S3 gateway, with rw, ro and writer identities."""

    base_dir: Path
    replication: str
    master: Component
    volumes: list[Component]
    filer: Component
    s3: Component
    endpoint: str
    rw: tuple[str, str]
    ro: tuple[str, str]
    wr: tuple[str, str]
    startup_timeout: float = 90.0

    @classmethod
    def create(
        cls, base_dir: Path, *, volumes: int = 3, replication: str = "001", volume_size_mb: int = 256
    ) -> SeaweedCluster:
        """Lay out a cluster under ``base_dir`` (not started). ``replication`` is SeaweedFS's xyz code:
        ``001`` keeps each volume on two servers of one rack, ``000`` keeps one copy."""
        base_dir.mkdir(parents=True, exist_ok=True)
        weed = str(venv_tool("weed"))
        rw, ro, wr = new_credentials("RW"), new_credentials("RO"), new_credentials("WR")
        identities = base_dir / "identities.json"
        write_identities(identities, rw, ro, wr)
        ports = pick_port_pairs(3 + volumes)
        mport, fport, sport, vports = ports[0], ports[1], ports[2], ports[3:]
        loopback = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]

        def component(name: str, port: int, *args: str) -> Component:
            folder = base_dir / name
            return Component(
                name=name,
                argv=[weed, "-logtostderr", *args, f"-port={port}", f"-port.grpc={port + 10000}"],
                log_path=base_dir / f"{name}.log",
                workdir=folder,
                port=port,
            )

        master = component(
            "master",
            mport,
            "master",
            *loopback,
            f"-mdir={base_dir / 'master'}",
            f"-defaultReplication={replication}",
            f"-volumeSizeLimitMB={volume_size_mb}",
            "-telemetry=false",
            "-peers=none",
        )
        vols = [
            component(
                f"volume{i}",
                port,
                "volume",
                *loopback,
                f"-dir={base_dir / f'volume{i}'}",
                "-max=200",
                f"-master=127.0.0.1:{mport}",
                "-dataCenter=dc1",
                "-rack=rack1",
                "-minFreeSpace=1GiB",
                "-preStopSeconds=0",
            )
            for i, port in enumerate(vports)
        ]
        filer = component(
            "filer",
            fport,
            "filer",
            *loopback,
            f"-master=127.0.0.1:{mport}",
            f"-defaultStoreDir={base_dir / 'filer'}",
            f"-defaultReplicaPlacement={replication}",
        )
        s3 = component(
            "s3",
            sport,
            "s3",
            "-ip.bind=127.0.0.1",
            f"-filer=127.0.0.1:{fport}",
            f"-config={identities}",
            "-allowDeleteBucketNotEmpty=false",
            "-autoCreateBucket=false",
            "-port.iceberg=0",
            "-port.lance=0",
        )
        return cls(
            base_dir=base_dir,
            replication=replication,
            master=master,
            volumes=vols,
            filer=filer,
            s3=s3,
            endpoint=f"http://127.0.0.1:{sport}",
            rw=rw,
            ro=ro,
            wr=wr,
        )

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start every component in dependency order and wait until an object can be written."""
        deadline = time.monotonic() + self.startup_timeout
        self.master.start()
        self._wait_http(self.master, "/cluster/status", deadline)
        for v in self.volumes:
            v.start()
        self.wait_volume_servers(len(self.volumes), deadline)
        self.filer.start()
        self._wait_http(self.filer, "/", deadline)
        self.s3.start()
        self.wait_writable(deadline)

    def stop(self) -> None:
        """Stop everything for good. A short grace only: the filer's graceful gRPC stop waits 15 s for
        its own metadata subscription, and the data is thrown away anyway."""
        for c in [self.s3, self.filer, *self.volumes, self.master]:
            c.stop(timeout=3)

    @property
    def components(self) -> list[Component]:
        return [self.master, *self.volumes, self.filer, self.s3]

    def restart_s3(self) -> None:
        self.s3.stop()
        self.s3.start()
        self.wait_writable(time.monotonic() + self.startup_timeout)

    def ensure_running(self) -> None:
        """Bring back whatever an earlier test killed (and failed before restoring)."""
        deadline = time.monotonic() + self.startup_timeout
        if not self.master.running:
            self.master.start()
            self._wait_http(self.master, "/cluster/status", deadline)
        for v in self.volumes:
            v.start()
        self.wait_volume_servers(len(self.volumes), deadline)
        if not self.filer.running:
            self.filer.start()
            self._wait_http(self.filer, "/", deadline)
        if not self.s3.running:
            self.s3.start()
        self.wait_writable(deadline)

    def _wait_http(self, c: Component, path: str, deadline: float) -> None:
        last = "no attempt"
        while time.monotonic() < deadline:
            if not c.running:
                raise RuntimeError(f"weed {c.name} exited during startup\n{c.log_tail()}")
            try:
                requests.get(f"http://127.0.0.1:{c.port}{path}", timeout=1)
                return
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.1)
        raise RuntimeError(f"weed {c.name} not answering after start ({last})\n{c.log_tail()}")

    def volume_servers_seen(self) -> int:
        """How many volume servers the master counts as alive (its /dir/status topology)."""
        doc = requests.get(f"http://127.0.0.1:{self.master.port}/dir/status", timeout=2).json()
        nodes = 0
        for dc in doc.get("Topology", {}).get("DataCenters") or []:
            for rack in dc.get("Racks") or []:
                nodes += len(rack.get("DataNodes") or [])
        return nodes

    def wait_volume_servers(self, count: int, deadline: float) -> None:
        seen = -1
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, ValueError):
                seen = self.volume_servers_seen()
                if seen == count:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"master sees {seen} volume servers, expected {count}\n{self.master.log_tail()}")

    def wait_writable(self, deadline: float) -> None:
        """Ready means an authenticated write goes through the gateway, not only that a port answers."""
        last = "no attempt"
        while time.monotonic() < deadline:
            if not self.s3.running:
                raise RuntimeError(f"weed s3 exited\n{self.s3.log_tail()}")
            try:
                probe = self.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
                names = [b["Name"] for b in probe.list_buckets().get("Buckets", [])]
                if READY_BUCKET not in names:
                    probe.create_bucket(Bucket=READY_BUCKET)
                probe.put_object(Bucket=READY_BUCKET, Key="probe", Body=b"ready")
                return
            except Exception as e:  # any failure here means "not yet"
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        raise RuntimeError(f"cluster S3 at {self.endpoint} not writable: {last}\n{self.s3.log_tail()}")

    # -- clients (the same face as SeaweedServer) ---------------------------

    def credentials(self, readonly: bool = False, writer: bool = False) -> tuple[str, str]:
        if readonly:
            return self.ro
        if writer:
            return self.wr
        return self.rw

    def client(self, readonly: bool = False, **config: Any) -> Any:
        return s3_client(self.endpoint, self.credentials(readonly), **config)


@contextlib.contextmanager
def running_cluster(base_dir: Path, **kw: Any) -> Iterator[SeaweedCluster]:
    cluster = SeaweedCluster.create(base_dir, **kw)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
