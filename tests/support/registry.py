"""A real container registry, test images made in Python, skopeo, and a Bearer-token proxy, for offline/oci's tests.

Why the real thing: Debian's ``docker-registry`` is CNCF distribution 2.8, the registry most
air-gapped sites run (and the reference for the v2 API), so pushes and pulls are checked against the
server's own rules (digest checks, upload sessions, manifest validation) rather than a mock's idea
of them. Images are pushed into it with ``skopeo``, an independent client, so a bug in ``offline/oci``
cannot hide on both sides of a round trip; ``skopeo inspect --raw`` reads back what ``push`` wrote.

Distribution 2.8 only does token auth against an external token server, so ``BearerProxy`` plays
both parts in front of it (401 + ``WWW-Authenticate: Bearer …``, a token endpoint that wants Basic
user:pass) and can drop a blob download once after N bytes to exercise resumption.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import secrets
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .processes import die_with_parent, log_tail, stop_process

REGISTRY_BIN = Path("/usr/bin/docker-registry")
SKOPEO = "skopeo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the registry -------------------------------------------------------------------------------


@dataclass
class RegistryServer:
    """One ``docker-registry serve`` on 127.0.0.1 with filesystem storage under ``base_dir``.

    ``tls`` = (certificate, key) serves HTTPS (``ca`` is then the CA that signed it, for the probe).
    """

    base_dir: Path
    port: int = 0
    startup_timeout: float = 30.0
    tls: tuple[Path, Path] | None = None
    ca: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "registry.log"

    def _write_config(self) -> Path:
        config = self.base_dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: {secrets.token_hex(16)}\n"
            + (f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n" if self.tls else "")
        )
        return config

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(3):
            self.port = _free_port()
            config = self._write_config()
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [str(REGISTRY_BIN), "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    verify: str | bool = str(self.ca) if self.ca else True
                    if requests.get(f"{self.url}/v2/", timeout=1, verify=verify).status_code == 200:
                        return
                except requests.RequestException as exc:
                    last = type(exc).__name__
                time.sleep(0.05)
            self.stop()  # exited (port taken?) or never answered: try another port
        raise RuntimeError(f"docker-registry did not start ({last}); log {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, 10)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def blob_path(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob's bytes."""
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    @contextlib.contextmanager
    def corrupted_blob(self, digest: str) -> Iterator[None]:
        """Inside, the registry serves other bytes (same length) for ``digest``; restored after."""
        path = self.blob_path(digest)
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            yield
        finally:
            path.write_bytes(original)


# -- test images --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One member of a test layer: a file (data), a folder (data None, not link), a symlink or hard link."""

    name: str
    data: bytes | None = b""
    mode: int = 0o644
    symlink: str | None = None
    hardlink: str | None = None
    uid: int = 0
    gid: int = 0


def file(name: str, data: bytes | str, mode: int = 0o644, *, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(name, data.encode() if isinstance(data, str) else data, mode, uid=uid, gid=gid)


def folder(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, None, mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, None, 0o777, symlink=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, None, 0o644, hardlink=target)


def whiteout(path: str) -> Entry:
    """Deletes ``path`` from the layers below."""
    parent, _, base = path.rpartition("/")
    return Entry(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"")


def opaque(folder_path: str) -> Entry:
    """Hides everything under ``folder_path`` in the layers below."""
    return Entry(f"{folder_path}/.wh..wh..opq", b"")


def layer_tar(entries: Sequence[Entry], *, mtime: int = 1_700_000_000) -> bytes:
    """An uncompressed tar of ``entries`` in the given order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mtime = mtime
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            if e.symlink is not None:
                info.type, info.linkname = tarfile.SYMTYPE, e.symlink
                tar.addfile(info)
            elif e.hardlink is not None:
                info.type, info.linkname = tarfile.LNKTYPE, e.hardlink
                tar.addfile(info)
            elif e.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return out.getvalue()


def gzip_layer(entries: Sequence[Entry]) -> bytes:
    return gzip.compress(layer_tar(entries), mtime=0)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data), **extra}


@dataclass
class TestImage:
    """An image manifest with its config and layers, all as bytes (blobs by digest)."""

    __test__ = False  # not a pytest class

    manifest: bytes
    config: bytes
    layers: list[bytes]
    architecture: str

    @property
    def digest(self) -> str:
        return _digest(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        found = {_digest(b): b for b in [self.config, *self.layers]}
        found[self.digest] = self.manifest
        return found

    @property
    def layer_digests(self) -> list[str]:
        return [_digest(b) for b in self.layers]


def make_image(
    layers: Sequence[bytes],
    *,
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
    user: str = "",
    architecture: str = "amd64",
    layer_media_type: str = OCI_LAYER,
    label: str = "",
) -> TestImage:
    """An OCI image from gzip layer blobs (``gzip_layer``), with Env and User in its config."""
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": list(env), "User": user, "Labels": {"test": label} if label else {}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(b)) for b in layers]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config_bytes),
        "layers": [_descriptor(layer_media_type, b) for b in layers],
    }
    return TestImage(json.dumps(manifest, sort_keys=True).encode(), config_bytes, list(layers), architecture)


def write_oci_layout(directory: Path, images: Sequence[TestImage], *, tag: str) -> str:
    """An OCI layout folder for skopeo (``oci:DIR:TAG``); several images become a multi-arch index.

    Returns the digest ``TAG`` names there (the manifest's, or the index's).
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for image in images:
        for digest, data in image.blobs.items():
            (blobs / digest[7:]).write_bytes(data)
    if len(images) == 1:
        top = _descriptor(OCI_MANIFEST, images[0].manifest)
        digest = images[0].digest
    else:
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                _descriptor(OCI_MANIFEST, i.manifest, platform={"os": "linux", "architecture": i.architecture})
                for i in images
            ],
        }
        index_bytes = json.dumps(index, sort_keys=True).encode()
        (blobs / _digest(index_bytes)[7:]).write_bytes(index_bytes)
        top = _descriptor(OCI_INDEX, index_bytes)
        digest = top["digest"]
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return digest


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed:\n{proc.stderr.decode(errors='replace')}")
    return proc


def skopeo_push(
    work_dir: Path, images: Sequence[TestImage], dest: str, *, tag: str = "t", docker_format: bool = False
) -> str:
    """Push test images to ``docker://dest`` with skopeo; returns the digest skopeo reports.

    ``docker_format`` converts to Docker schema 2 (single images only), so both manifest kinds are
    exercised.
    """
    layout = work_dir / f"layout-{secrets.token_hex(4)}"
    write_oci_layout(layout, images, tag=tag)
    digest_file = layout.parent / f"{layout.name}.digest"
    args = ["copy", "--dest-tls-verify=false", "--digestfile", str(digest_file)]
    if len(images) > 1:
        args.append("--all")
    if docker_format:
        args += ["--format", "v2s2"]
    skopeo(*args, f"oci:{layout}:{tag}", f"docker://{dest}")
    return digest_file.read_text().strip()


def skopeo_inspect_raw(ref: str) -> bytes:
    """The manifest bytes the registry holds for ``ref`` (host/repo:tag or @digest), read by skopeo."""
    return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout


def push_raw(host: str, repository: str, tag: str, image: TestImage) -> str:
    """Put an image's blobs and manifest as they are (plain HTTP, monolithic uploads).

    For images skopeo would change on the way (it gzips uncompressed layers for a registry).
    """
    base = f"http://{host}/v2/{repository}"
    for digest, data in image.blobs.items():
        if digest == image.digest:
            continue
        start = requests.post(f"{base}/blobs/uploads/", timeout=30)
        start.raise_for_status()
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        requests.put(f"{location}{sep}digest={digest}", data=data, timeout=30).raise_for_status()
    media_type = json.loads(image.manifest)["mediaType"]
    put = requests.put(f"{base}/manifests/{tag}", data=image.manifest, headers={"Content-Type": media_type}, timeout=30)
    put.raise_for_status()
    return image.digest


# -- Bearer-token proxy ---------------------------------------------------------------------------


@dataclass
class ProxyLog:
    lines: list[str] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


class BearerProxy:
    """Token auth in front of a registry: what Docker Hub, GHCR, Harbor… do, small enough to read.

    - a request without a valid ``Authorization: Bearer`` gets 401 and a challenge naming the
      token realm (``/token`` on this proxy), the service and the scope the path needs;
    - ``/token`` wants Basic ``username:password`` (``allow_anonymous`` lets pulls go without) and
      returns ``{"token": …}`` (or ``access_token`` when ``access_token_field``);
    - authorised requests are forwarded to the registry unchanged (Host kept, so its upload
      ``Location`` URLs point back here);
    - ``drop_blob_after(n)`` closes the next blob GET longer than ``n`` bytes after ``n`` body bytes, once;
    - ``fail_next(method, fragment, status)`` answers the next matching request with ``status``, once;
    - ``basic=True`` asks for Basic credentials on every request instead (what distribution's htpasswd
      auth does), with no token endpoint.
    """

    def __init__(
        self, backend: str, username: str, password: str, *, allow_anonymous: bool = False, basic: bool = False
    ) -> None:
        self.backend = backend  # host:port
        self.username = username
        self.password = password
        self.allow_anonymous = allow_anonymous
        self.basic = basic
        self._failures: list[tuple[str, str, int]] = []
        self.access_token_field = False
        self.tokens: set[str] = set()
        self.log = ProxyLog()
        self._drop_after: int | None = None
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> BearerProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def drop_blob_after(self, n: int) -> None:
        self._drop_after = n

    def fail_next(self, method: str, fragment: str, status: int) -> None:
        with self.log.lock:
            self._failures.append((method, fragment, status))

    def _take_failure(self, method: str, path: str) -> int | None:
        with self.log.lock:
            for i, (m, fragment, status) in enumerate(self._failures):
                if m == method and fragment in path:
                    del self._failures[i]
                    return status
        return None

    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user, password) == (self.username, self.password)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        return type("Handler", (_ProxyHandler,), {"proxy": self})


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """The proxy's request handler; ``proxy`` is set on the subclass each BearerProxy makes."""

    proxy: BearerProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        self.proxy.log.add(format % args)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _scope(self) -> str:
        path = self.path.split("?", 1)[0]
        repo = path.removeprefix("/v2/")
        for marker in ("/manifests/", "/blobs/", "/tags/"):
            if marker in repo:
                repo = repo.split(marker, 1)[0]
                break
        else:
            return ""
        push = self.command in ("PUT", "POST", "PATCH", "DELETE")
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    def _token(self) -> None:
        auth = self.headers.get("Authorization", "")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        user = None
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (self.proxy.username, self.proxy.password):
                self._reply(401, b'{"details":"bad credentials"}')
                return
        elif not self.proxy.allow_anonymous:
            self._reply(401, b'{"details":"credentials required"}', {"WWW-Authenticate": 'Basic realm="t"'})
            return
        with self.proxy.log.lock:
            self.proxy.log.token_requests.append({"user": user, **query})
        token = secrets.token_urlsafe(24)
        self.proxy.tokens.add(token)
        key = "access_token" if self.proxy.access_token_field else "token"
        self._reply(200, json.dumps({key: token}).encode(), {"Content-Type": "application/json"})

    def _handle(self) -> None:
        if self.path.startswith("/token"):
            self._token()
            return
        auth = self.headers.get("Authorization", "")
        if self.proxy.basic:
            if not self.proxy._basic_ok(auth):
                self._drain()
                self._reply(401, b"", {"WWW-Authenticate": 'Basic realm="test-registry"'})
                return
        elif not (auth.startswith("Bearer ") and auth[7:] in self.proxy.tokens):
            scope = self._scope()
            challenge = f'Bearer realm="http://{self.proxy.host}/token",service="test-registry"'
            if scope:
                challenge += f',scope="{scope}"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self._drain()
            self._reply(401, body, {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
            return
        status = self.proxy._take_failure(self.command, self.path)
        if status is not None:
            self._drain()
            self._reply(status, b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}')
            return
        self._forward()

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "connection")}
        if "Range" in self.headers:
            with self.proxy.log.lock:
                self.proxy.log.ranges.append(self.headers["Range"])
        conn = http.client.HTTPConnection(self.proxy.backend, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            drop = self.proxy._drop_after if (self.command == "GET" and "/blobs/sha256:" in self.path) else None
            if drop is not None and resp.status in (200, 206) and len(data) > drop:
                self.proxy._drop_after = None
            else:
                drop = None
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "transfer-encoding"):
                    self.send_header(k, v)
            if "content-length" not in {k.lower() for k, _ in resp.getheaders()}:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if drop is not None:
                self.wfile.write(data[:drop])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


def write_docker_config(path: Path, host: str, username: str, password: str, *, style: str = "auth") -> Path:
    """A Docker ``config.json`` with a login for ``host`` (``auth`` base64 or ``username``/``password``)."""
    if style == "auth":
        entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    else:
        entry = {"username": username, "password": password}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": {host: entry}}))
    return path
