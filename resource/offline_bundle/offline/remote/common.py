"""What the HTTPS, git and GitHub clients share: the error, the result, and how a URL is shown.

Nothing a URI carries as credentials is ever put in a message or a log line: every client names
what it fetches through the redaction here.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from offline_bundle.errors import BundleError, ConfigError

CHUNK = 64 * 1024  # small reads: a connection cut loses at most the bytes of one read
HEX40 = re.compile(r"[0-9a-f]{40}\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SECRET_QUERY = re.compile(r"(sig|signature|token|secret|password|credential|key)", re.IGNORECASE)


def quiet(_: str) -> None:
    pass


class RemoteError(BundleError):
    """A download, a git operation or a release lookup on the connected side failed."""


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int


# --- names in messages ---------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without ``user:pass@`` and with the values of secret-looking query parameters hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    if parts.netloc != netloc:
        netloc = "***@" + netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_uri(uri: str) -> str:
    """A git URI for messages: URL forms go through ``redact_url`` (``https://TOKEN@host`` is a common way to
    pass a token), but the user of an SSH URI (``git@host:path``, ``ssh://git@host/…``) is a login name, kept."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.scheme in ("ssh", "git+ssh") and "@" in parts.netloc and ":" not in parts.netloc.rpartition("@")[0]:
        return uri  # ssh://git@host/…: a login name
    return redact_url(uri)


def normalise_sha256(value: str) -> str:
    """``sha256:<hex>`` or ``<hex>`` → lower-case hex; anything else is a ConfigError."""
    v = value.strip().lower()
    v = v.removeprefix("sha256:")
    if not HEX64.match(v):
        raise ConfigError(f"not a SHA-256 digest: {value!r}")
    return v


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_scheme(url: str, *, allow_http: bool = False) -> None:
    """HTTPS only; plain HTTP for loopback hosts or when explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and (allow_http or is_loopback(parts.hostname)):
        return
    if parts.scheme == "http":
        raise RemoteError(f"{redact_url(url)}: plain http:// is refused for a non-loopback host (use https://)")
    raise RemoteError(f"{redact_url(url)}: unsupported URL scheme {parts.scheme!r} (https:// only)")


def reason(e: BaseException) -> str:
    """The useful part of a requests/urllib3 error: the TLS reason, or what caused it, without the URL."""
    inner: BaseException = e
    if inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]  # ChunkedEncodingError(ProtocolError(...)), ConnectionError(MaxRetryError(...))
    text = inner.args[0] if inner.args and isinstance(inner.args[0], str) else str(inner)
    m = re.search(r"\[SSL: [A-Z_]+\] [^(')\]]+|certificate verify failed[^(')\]]*", text)
    if m:
        return m.group(0).strip()
    m = re.search(r"Caused by (.*)\)\Z", text)
    return redact_url_in_text(m.group(1) if m else text)[:300]


def hash_file_state(path: Path) -> tuple[Any, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            n += len(block)
    return h, n


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    h, n = hash_file_state(path)
    return h.hexdigest(), n


def remove_files(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def redact_url_in_text(text: str) -> str:
    """Hide ``user:pass@`` of any URL inside ``text`` (git repeats the URI in its errors)."""
    return re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)
