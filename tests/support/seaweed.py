"""A real SeaweedFS (``weed mini``) for integration tests.

Why a real server rather than a mock: the resource's correctness depends on
S3 semantics (conditional writes, listing, auth errors, checksums) that mocks
get subtly wrong.  ``weed mini`` runs master, volume, filer and S3 gateway in
one process and starts in about a second, so one per test session is cheap.

Every listening port is chosen explicitly on loopback so parallel sessions and
leftover servers never collide (weed's defaults are fixed ports, and each gRPC
port silently defaults to its HTTP port + 10000).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from .paths import venv_tool
from .processes import die_with_parent, log_tail, stop_process

REGION = "us-east-1"

# HTTP ports that each get an explicit gRPC twin (see _pick_ports).
_HTTP_COMPONENTS = ("master", "volume", "filer", "s3")
_START_ATTEMPTS = 3
_PORT_CLASH_MARKERS = ("Port allocation failed", "address already in use", "is not available")


READY_BUCKET = "ready-probe"


def _bind_free_port(socks: list[socket.socket], port: int = 0) -> int | None:
    """Bind 127.0.0.1:port and keep the socket open in ``socks``.

    Holding every probe socket until all ports are chosen guarantees the
    choices are distinct from each other; they are released just before weed
    starts (a small race with other processes remains, handled by retrying).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    socks.append(s)
    return int(s.getsockname()[1])


def _pick_ports() -> dict[str, int]:
    """Choose free loopback ports for every listener ``weed mini`` opens.

    The admin server is special: in weed 4.48 the embedded maintenance worker
    dials the admin gRPC port as ``admin.port + 10000`` even when
    ``-admin.port.grpc`` says otherwise, so the admin pair is picked with
    exactly that offset (the worker then connects instead of logging
    reconnect errors forever and delaying shutdown).
    """
    socks: list[socket.socket] = []
    try:
        ports: dict[str, int] = {}
        for name in _HTTP_COMPONENTS:
            for key in (f"{name}.port", f"{name}.port.grpc"):
                port = _bind_free_port(socks)
                assert port is not None
                ports[key] = port
        port = _bind_free_port(socks)
        assert port is not None
        ports["webdav.port"] = port
        for _ in range(200):
            grpc = _bind_free_port(socks)
            assert grpc is not None
            if grpc - 10000 > 1024:
                http = _bind_free_port(socks, grpc - 10000)
                if http is not None:
                    ports["admin.port"] = http
                    ports["admin.port.grpc"] = grpc
                    break
        else:
            raise RuntimeError("could not find a free admin port pair (p, p+10000) on 127.0.0.1")
        return ports
    finally:
        for s in socks:
            s.close()


def write_identities(
    path: Path, rw: tuple[str, str], ro: tuple[str, str], writer: tuple[str, str] | None = None
) -> None:
    """Write the S3 identities: admin read-write, read-only, and a writer with only what a put needs.

    The writer (Read, List, Write: no Admin, no bucket creation) and the read-only identity are the
    least privileges docs/operations.md documents for the connected and the air-gapped side.
    """
    extra = []
    if writer is not None:
        extra.append(
            {
                "name": "writer",
                "credentials": [{"accessKey": writer[0], "secretKey": writer[1]}],
                "actions": ["Read", "List", "Write"],
            }
        )
    doc = {
        "identities": extra
        + [
            {
                "name": "rw",
                "credentials": [{"accessKey": rw[0], "secretKey": rw[1]}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            },
            {
                "name": "ro",
                "credentials": [{"accessKey": ro[0], "secretKey": ro[1]}],
                "actions": ["Read", "List"],
            },
        ]
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)


def new_credentials(prefix: str) -> tuple[str, str]:
    """Random (access key, secret key) so no test can depend on fixed secrets."""
    return f"{prefix}{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)


@dataclass
class SeaweedServer:
    """Handle to one ``weed mini`` process and its credentials.

    ``stop()``/``start()`` restart the *same* server (same ports, data dir and
    identities) so fault-injection tests can take S3 away mid-operation and
    bring it back with its objects intact.
    """

    endpoint: str
    rw_access_key: str
    rw_secret_key: str
    ro_access_key: str
    ro_secret_key: str
    data_dir: Path
    log_path: Path
    base_dir: Path
    ports: dict[str, int]
    identities_path: Path
    weed: Path
    startup_timeout: float = 60.0
    wr_access_key: str = ""
    wr_secret_key: str = ""
    extra_args: list[str] = field(default_factory=list)  # e.g. TLS certificate flags
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _starts: int = field(default=0, repr=False)

    # -- lifecycle --------------------------------------------------------

    @classmethod
    def create(cls, base_dir: Path, *, startup_timeout: float = 60.0) -> SeaweedServer:
        """Lay out a server under ``base_dir`` (not started yet)."""
        base_dir.mkdir(parents=True, exist_ok=True)
        data_dir = base_dir / "data"
        data_dir.mkdir(exist_ok=True)
        rw = new_credentials("RW")
        ro = new_credentials("RO")
        wr = new_credentials("WR")
        identities = base_dir / "identities.json"
        write_identities(identities, rw, ro, wr)
        ports = _pick_ports()
        return cls(
            endpoint=f"http://127.0.0.1:{ports['s3.port']}",
            rw_access_key=rw[0],
            rw_secret_key=rw[1],
            ro_access_key=ro[0],
            ro_secret_key=ro[1],
            data_dir=data_dir,
            log_path=base_dir / "weed.log",
            base_dir=base_dir,
            ports=ports,
            identities_path=identities,
            weed=venv_tool("weed"),
            startup_timeout=startup_timeout,
            wr_access_key=wr[0],
            wr_secret_key=wr[1],
        )

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    def argv(self) -> list[str]:
        """The exact command line; public so failures can print it."""
        argv = [
            str(self.weed),
            # Log to stderr (captured in log_path) instead of glog files in /tmp.
            "-logtostderr",
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.identities_path}",
            # No network here, and tests must not phone home anyway.
            "-master.telemetry=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Behave like AWS S3: no implicit bucket creation on PUT, and no
            # deleting non-empty buckets.  Otherwise "bucket missing" and
            # cleanup bugs would pass here and fail in production.
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=false",
            # WebDAV's chunk cache defaults to a random folder in /tmp that outlives the server.
            f"-webdav.cacheDir={self.data_dir / 'webdav-cache'}",
            # Each bucket gets its own volumes, and with the default 1 GiB volumes the volume count
            # (free disk / volume size) ran out after about 50 buckets: writes then failed with
            # HTTP 500 "no free volumes left". 64 MiB volumes leave room for hundreds.
            "-master.volumeSizeLimitMB=64",
        ]
        argv += [f"-{key}={port}" for key, port in sorted(self.ports.items())]
        return argv + self.extra_args

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start weed and block until S3 serves authenticated requests.

        On the very first start a port grabbed by someone else between picking
        and binding is retried with fresh ports; later starts must reuse the
        same ports (clients already hold the endpoint), so they fail instead.
        """
        if self.is_running():
            return
        attempts = _START_ATTEMPTS if self._starts == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except _PortClash:
                if attempt == attempts:
                    raise RuntimeError(
                        f"weed could not bind its ports after {attempts} attempt(s)\n{self._failure_context()}"
                    ) from None
                self.ports = _pick_ports()
                self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"

    def _start_once(self) -> None:
        self._starts += 1
        log = self.log_path.open("ab")
        try:
            log.write(f"\n===== start #{self._starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Ready means: the S3 port answers HTTP *and* the rw identity can list.

        The port answering alone is not enough right after start: identities
        and the filer connection come up asynchronously, and the first test
        would see spurious auth or 5xx errors.
        """
        deadline = time.monotonic() + self.startup_timeout
        http_ok = False
        last_error: str = "no attempt made"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                tail = self.log_tail()
                self._proc = None
                self._remove_sockets()
                if any(m in tail for m in _PORT_CLASH_MARKERS):
                    raise _PortClash(tail)
                raise RuntimeError(f"weed exited during startup\n{self._failure_context()}")
            try:
                if not http_ok:
                    requests.get(self.endpoint, timeout=1)
                    http_ok = True
                probe = self.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
                names = [b["Name"] for b in probe.list_buckets().get("Buckets", [])]
                # After a restart the S3 port answers before the volume server takes writes again:
                # ready means an object can be written.
                if READY_BUCKET not in names:
                    probe.create_bucket(Bucket=READY_BUCKET)
                probe.put_object(Bucket=READY_BUCKET, Key="probe", Body=b"ready")
                return
            except Exception as exc:  # any failure here just means "not yet"
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 at {self.endpoint} not ready after {self.startup_timeout:.0f}s "
            f"(last error: {last_error})\n{self._failure_context()}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        """Stop weed: SIGTERM (clean shutdown, ~2 s), SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout)
        self._remove_sockets()

    def kill(self) -> None:
        """SIGKILL without a clean shutdown, for crash-style fault injection."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._remove_sockets()

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Bring the server back if an earlier test stopped it and then failed."""
        if not self.is_running():
            self.start()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """``with server.stopped(): ...`` - S3 is down inside, back up after."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def _remove_sockets(self) -> None:
        """weed leaves unix sockets named after its ports in /tmp; tidy ours."""
        ours = {str(p) for p in self.ports.values()}
        for sock in Path("/tmp").glob("seaweedfs-*.sock"):
            if sock.stem.rsplit("-", 1)[-1] in ours:
                with contextlib.suppress(OSError):
                    sock.unlink()

    # -- diagnostics ------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def log_errors(self, limit: int = 10) -> str:
        """glog E/F lines: the actual cause is often buried under INFO noise."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        errors = [line for line in text.splitlines() if re.match(r"[EF]\d{4} ", line)]
        return "\n".join(errors[-limit:])

    def _failure_context(self) -> str:
        errors = self.log_errors()
        return (
            f"command: {' '.join(self.argv())}\n"
            + (f"errors in log:\n{errors}\n" if errors else "")
            + f"log {self.log_path} (tail):\n{self.log_tail()}"
        )

    # -- clients ----------------------------------------------------------

    def credentials(self, readonly: bool = False, writer: bool = False) -> tuple[str, str]:
        if readonly:
            return self.ro_access_key, self.ro_secret_key
        if writer:
            return self.wr_access_key, self.wr_secret_key
        return self.rw_access_key, self.rw_secret_key

    def client(self, readonly: bool = False, **config: Any) -> Any:
        """A boto3 S3 client for the rw (default) or ro identity (see ``s3_client``)."""
        return s3_client(self.endpoint, self.credentials(readonly), **config)


def s3_client(endpoint: str, credentials: tuple[str, str], **config: Any) -> Any:
    """A boto3 S3 client for a test store.

    Path-style because there is no wildcard DNS for virtual-host buckets on 127.0.0.1. Checksums
    only "when_required" because recent botocore otherwise sends CRC trailers some S3-compatible
    servers reject; this mirrors what the resource itself configures. ``config`` entries override
    the botocore Config (e.g. ``retries={"max_attempts": 1}``).
    """
    settings: dict[str, Any] = {
        "s3": {"addressing_style": "path"},
        "signature_version": "s3v4",
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "connect_timeout": 5,
        "read_timeout": 60,
        "retries": {"max_attempts": 3, "mode": "standard"},
    }
    settings.update(config)
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=credentials[0],
        aws_secret_access_key=credentials[1],
        region_name=REGION,
        config=Config(**settings),
    )


class _PortClash(Exception):
    """weed died because one of its ports was taken after we picked it."""


def new_bucket_name() -> str:
    """A unique, DNS-valid bucket name (lowercase, 3-63 chars, starts with a letter)."""
    return f"t-{secrets.token_hex(4)}"
