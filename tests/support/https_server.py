"""A threaded HTTPS file server on loopback with a private CA, and a tiny forward/CONNECT proxy.

Why real servers rather than mocks: resuming, retrying, TLS trust and proxies depend on what goes over
the socket (Range and If-Range answers, a connection cut in the middle of a body, a certificate chain,
a CONNECT tunnel), which only a real server shows. Both servers keep a log of what they were asked and
what they sent, so a test can assert that a resumed download transferred only the rest and that a
proxy was (or was not) used.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import re
import select
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .tls import make_ca

LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"


@dataclass
class Route:
    """What the server answers for one path (the path may include a query string)."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # None: a strong ETag from the body's SHA-256
    last_modified: str | None = LAST_MODIFIED
    ranges: bool = True  # False: ignore Range and always send the whole body with 200

    def tag(self) -> str:
        return self.etag if self.etag is not None else '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Served:
    """One request as the server saw it, and how many bytes of the body it sent from where."""

    method: str
    path: str
    status: int
    range: str | None
    if_range: str | None
    start: int
    sent: int
    headers: dict[str, str]


_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        path = self.path
        if "://" in path:  # a forward proxy sends the absolute URI
            parts = urlsplit(path)
            path = parts.path + ("?" + parts.query if parts.query else "")
        with owner.lock:
            route = owner.routes.get(path) or owner.routes.get(path.split("?", 1)[0])
            fail = owner.fail_once.pop(path.split("?", 1)[0], None)
            drop = owner.drop_after.pop(path.split("?", 1)[0], None)
            wrong = path.split("?", 1)[0] in owner.wrong_bytes
        asked = self.headers.get("Range")
        if_range = self.headers.get("If-Range")

        # Each request is logged before its answer goes out: a test reads the log as soon as the client
        # returns, and the client can return (or retry) before this thread would otherwise get to it.
        def record(status: int, start: int = 0, sent: int = 0) -> None:
            with owner.lock:
                owner.log.append(Served(self.command, path, status, asked, if_range, start, sent, dict(self.headers)))

        if fail is not None:
            record(fail)
            self._reply(fail, b"temporarily unavailable\n", {"Content-Type": "text/plain", "Retry-After": "0"})
            return
        if route is None:
            record(404)
            self._reply(404, b"not found\n", {"Content-Type": "text/plain"})
            return
        body = route.body
        if wrong and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        headers = {"Content-Type": route.content_type, **route.headers}
        if route.status != 200:
            record(route.status, 0, 0 if head else len(body))
            self._reply(route.status, body, headers, head=head)
            return
        etag = route.tag()
        headers["ETag"] = etag
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        if route.ranges:
            headers["Accept-Ranges"] = "bytes"
        start, end, status = 0, len(body), 200
        m = _RANGE.match(asked or "")
        validator_ok = if_range is None or if_range in (etag, route.last_modified)
        if route.ranges and m and validator_ok:
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else len(body) - 1
            if first >= len(body):
                record(416)
                self._reply(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                return
            start, end, status = first, min(last, len(body) - 1) + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
        payload = body[start:end]
        if drop is not None and not head:
            self._start(status, headers, len(payload))
            part = payload[:drop]
            self.wfile.write(part)
            self.wfile.flush()
            record(status, start, len(part))  # before the cut: the client's retry comes after it in the log
            # Cut the connection without a TLS close_notify, as a dying link would.
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        record(status, start, 0 if head else len(payload))
        self._reply(status, payload, headers, head=head)

    def _start(self, status: int, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _reply(self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False) -> None:
        self._start(status, headers, len(body))
        if not head:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpsFileServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # refused handshakes and cut connections are what some tests are about


class _TlsServer(_Server):
    context: ssl.SSLContext

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = self.socket.accept()
        # The handshake runs in the request's thread (in setup), never in the accepting one.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class _TlsHandler(_Handler):
    def setup(self) -> None:
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()


class HttpsFileServer:
    """Serve ``routes`` over HTTPS (or plain HTTP with ``tls=False``) on 127.0.0.1 until ``stop()``.

    Fault switches, each keyed by path (without the query): ``fail_once`` answers one request with a
    status (503 by default) before serving normally; ``drop_after`` sends the headers and N bytes of
    the body once, then cuts the connection; ``wrong_bytes`` serves the body with its first byte
    flipped (every time, until removed). ``log`` lists every request served.
    """

    def __init__(self, pki_dir: Path, *, tls: bool = True) -> None:
        self.routes: dict[str, Route] = {}
        self.fail_once: dict[str, int] = {}
        self.drop_after: dict[str, int] = {}
        self.wrong_bytes: set[str] = set()
        self.log: list[Served] = []
        self.lock = threading.Lock()
        self.tls = tls
        self.ca_pem: Path | None = None
        if tls:
            self.ca_pem, cert, key = make_ca(pki_dir)
            httpd: _Server = _TlsServer(("127.0.0.1", 0), _TlsHandler)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            httpd.context = ctx  # type: ignore[attr-defined]
        else:
            httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes = b"", **kwargs: object) -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        with self.lock:
            self.routes[path] = Route(body=body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def requests_for(self, path: str) -> list[Served]:
        with self.lock:
            return [s for s in self.log if s.path.split("?", 1)[0] == path]

    def start(self) -> HttpsFileServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="https-file-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> HttpsFileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1").strip()
        if not line:
            return
        method, target, _ = line.split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            h = self.rfile.readline(65536).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            k, _, v = h.partition(":")
            headers.append((k.strip(), v.strip()))
        with self.server.owner.lock:
            self.server.owner.log.append((method, target))
        if method == "CONNECT":
            self._tunnel(target)
        else:
            self._forward(method, target, headers)

    def _tunnel(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        client = self.connection
        with upstream:
            socks = [client, upstream]
            while True:
                readable, _, _ = select.select(socks, [], [], 30)
                if not readable:
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is client else client).sendall(data)

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]]) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        path = parts.path + ("?" + parts.query if parts.query else "")
        skip = {"proxy-connection", "connection", "keep-alive"}
        conn.request(method, path, headers={k: v for k, v in headers if k.lower() not in skip})
        resp = conn.getresponse()
        body = resp.read()
        out = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
        for k, v in resp.getheaders():
            if k.lower() not in skip | {"content-length", "transfer-encoding"}:
                out.append(f"{k}: {v}\r\n")
        out.append(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        self.wfile.write("".join(out).encode("latin-1") + body)
        conn.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ForwardProxy

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class ForwardProxy:
    """A plain-HTTP proxy on 127.0.0.1: CONNECT tunnels and absolute-URI forwarding, one request per
    connection. ``log`` lists (method, target) of every request, e.g. ("CONNECT", "127.0.0.1:4431")."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._srv = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._srv.owner = self
        self.port = int(self._srv.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> ForwardProxy:
        self._thread = threading.Thread(target=self._srv.serve_forever, name="forward-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
