"""Container images from an OCI/Docker registry into files, and from those files into another registry.

Why our own client rather than shelling out to skopeo: the connected side must verify the SHA-256 of
every manifest and blob while it streams (a registry or a proxy that serves other bytes is refused
by name), write byte-identical archives for the same image (bundles are compared and signed), and
turn the layers into the ``rootfs/`` + ``metadata.json`` tarball Concourse tasks run from, all with
bounded memory and without a container runtime. The registry HTTP API v2 (distribution spec) is a
handful of requests, so the whole path stays in one process we can test against a real registry.

What is carried is one image manifest per image (the platform's, ``linux/amd64`` by default): when a
tag names a multi-platform index, the index is resolved and its digest recorded, but the air-gapped
registry receives the platform manifest and is addressed by that manifest's digest.

Auth follows the Docker conventions: anonymous first; on ``401`` a ``Bearer`` challenge is answered
from the token endpoint it names (with Basic credentials from a Docker ``config.json`` when it has
some for the registry), a ``Basic`` challenge with those credentials. Credential helpers
(``credsStore``/``credHelpers``) are not run. HTTPS always, except loopback hosts and registries the
caller lists as insecure. Credentials and tokens are never logged or put in a message.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests

from offline_bundle.core.progress import human
from offline_bundle.errors import BundleError, ConfigError
from offline_bundle.offline.remote.http import sha256_file

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class RegistryError(BundleError):
    """A registry refused a request, or served bytes that do not match their digest."""


DEFAULT_PLATFORM = "linux/amd64"
DOCKER_HUB = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
GZIP_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
REF_NAME = "org.opencontainers.image.ref.name"
REPOSITORY_ANNOTATION = "io.offline-bundle.repository"
INDEX_DIGEST_ANNOTATION = "io.offline-bundle.index-digest"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

CHUNK = 1 << 20
# Blob reads: a connection that breaks loses the chunk being read, so keep it small enough that a
# resume repeats little (and large enough that the per-chunk overhead stays invisible).
READ_CHUNK = 64 << 10
MAX_JSON_BYTES = 4 << 20  # manifests and configs; distribution itself refuses manifests over 4 MiB
PROGRESS_EVERY = 5.0
TIMEOUT = (15, 120)
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}

# -- references -------------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # "registry-1.docker.io" for Docker Hub names; "127.0.0.1:5000"
    repository: str  # "library/busybox" (Docker Hub short names get "library/")
    tag: str | None
    digest: str | None  # "sha256:<64 hex>"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """``host/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: str) -> ImageRef:
        if not _DIGEST_RE.fullmatch(digest):
            raise ConfigError(f"{self.name}: {digest!r} is not a sha256 digest")
        return replace(self, digest=digest)


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_image_ref(text: str, *, tag: str | None = None) -> ImageRef:
    """``busybox``, ``docker.io/library/busybox:1.36``, ``127.0.0.1:5000/a/b@sha256:…`` -> ImageRef.

    ``tag`` is the separate tag of a Concourse ``registry-image`` source (``repository`` + ``tag``);
    it may not contradict a tag written in ``text``. No tag and no digest means ``latest``.
    """
    original = text
    text = text.strip()
    if not text:
        raise ConfigError("an image reference is empty")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ConfigError(f"image {original!r}: {digest!r} is not a sha256:<64 lowercase hex> digest")
    registry = DOCKER_HUB
    first, sep, rest = text.partition("/")
    if sep and _looks_like_host(first):
        if not _HOST_RE.fullmatch(first):
            raise ConfigError(f"image {original!r}: {first!r} is not a registry host")
        registry = DOCKER_HUB if first.lower() in _DOCKER_HUB_ALIASES else first
        text = rest
    written_tag: str | None = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, written_tag = text[:colon], text[colon + 1 :]
        if not _TAG_RE.fullmatch(written_tag):
            raise ConfigError(f"image {original!r}: {written_tag!r} is not a valid tag")
    if tag is not None:
        tag = str(tag)
        if not _TAG_RE.fullmatch(tag):
            raise ConfigError(f"image {original!r}: tag {tag!r} is not a valid tag")
        if written_tag is not None and written_tag != tag:
            raise ConfigError(f"image {original!r}: tag {tag!r} contradicts the tag {written_tag!r} in the reference")
        written_tag = tag
    if not _REPOSITORY_RE.fullmatch(text):
        raise ConfigError(
            f"image {original!r}: repository {text!r} is not valid (lowercase letters, digits, separators . _ - /)"
        )
    if registry == DOCKER_HUB and "/" not in text:
        text = f"library/{text}"
    if len(f"{registry}/{text}") > 255:
        raise ConfigError(f"image {original!r}: the name is longer than 255 characters")
    if written_tag is None and digest is None:
        written_tag = "latest"
    return ImageRef(registry=registry, repository=text, tag=written_tag, digest=digest)


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedImage:
    ref: ImageRef  # as asked (tag kept)
    index_digest: str | None  # digest of the manifest list / OCI index, when the reference names one
    digest: str  # digest of the platform's image manifest
    media_type: str  # of that manifest
    size: int  # of that manifest


@dataclass(frozen=True)
class SavedImage:
    resolved: ResolvedImage
    oci_archive: Path  # OCI image layout as a tar (skopeo reads it as oci-archive:PATH)
    rootfs_tarball: Path | None  # gzip tar of rootfs/ + metadata.json ({"env": [...], "user": "..."})
    sha256: dict[str, str]  # file name -> SHA-256 of the files written


# -- WWW-Authenticate -------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CHALLENGE_PART = re.compile(rf'\s*(?:({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)|({_TOKEN}))\s*,?')


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``Bearer realm="…",service="…",scope="…"`` (possibly several challenges) -> [(scheme, params)].

    The scheme is lower-cased, parameter names too; quoted values are unescaped.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while pos < len(header):
        m = _CHALLENGE_PART.match(header, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        key, value, scheme = m.group(1), m.group(2), m.group(3)
        if scheme is not None:
            challenges.append((scheme.lower(), {}))
            # A scheme may be directly followed (after a space) by its first parameter.
            continue
        if not challenges:
            continue
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        challenges[-1][1][key.lower()] = value
    return challenges


# -- Docker config.json -----------------------------------------------------------------------


def _config_host(key: str) -> str:
    """An ``auths`` key (``https://index.docker.io/v1/``, ``host:5000``, ``http://host/v2/``) -> host."""
    if "://" in key:
        key = key.split("://", 1)[1]
    host = key.split("/", 1)[0].lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


@dataclass(frozen=True)
class _Credentials:
    username: str
    password: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def docker_config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env) / "config.json"
    return Path.home() / ".docker" / "config.json"


def load_docker_credentials(path: Path) -> tuple[dict[str, _Credentials], dict[str, str]]:
    """(host -> credentials, host -> why there are none usable) from a Docker ``config.json``.

    A missing file means anonymous. The second map explains registries whose entry cannot be used
    (a credential helper, an identity token), so a refusal can say why instead of "unauthorized".
    """
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Docker config {path}: cannot read it as JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"Docker config {path}: not a JSON object")
    creds: dict[str, _Credentials] = {}
    unusable: dict[str, str] = {}
    helpers = doc.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            unusable[_config_host(str(key))] = (
                f"{path} names credential helper docker-credential-{helper} for it; "
                "credential helpers are not supported, put the login in auths"
            )
    for key, entry in (doc.get("auths") or {}).items():
        if not isinstance(entry, dict):
            continue
        host = _config_host(str(key))
        user = entry.get("username")
        password = entry.get("password")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except ValueError:
                raise ConfigError(f"Docker config {path}: auths.{key}.auth is not base64 of user:password") from None
        if user and password is not None:
            creds[host] = _Credentials(str(user), str(password))
        elif entry.get("identitytoken"):
            unusable.setdefault(host, f"{path} has only an identity token for it, which is not supported")
    store = doc.get("credsStore")
    if store:
        unusable.setdefault(
            "*", f"{path} uses credential store docker-credential-{store}; credential helpers are not supported"
        )
    return creds, unusable


# -- hosts ------------------------------------------------------------------------------------


def _hostname(registry: str) -> str:
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    host = _hostname(registry).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- streaming helpers -------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it on its way to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self._target.write(view)
        return len(view)


class _UploadBody:
    """A file region with a length, read in chunks by requests (so it sends Content-Length, not chunked)."""

    def __init__(self, source: IO[bytes], size: int) -> None:
        self._source = source
        self._size = size
        self._left = size
        self.hash = hashlib.sha256()

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._source.read(min(n, CHUNK * 4))
        self._left -= len(data)
        self.hash.update(data)
        return data


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return doc


def _canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _parse_platform(text: str) -> tuple[str, str, str | None]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(f"platform {text!r} is not os/arch[/variant] (e.g. linux/amd64)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _platform_text(p: dict[str, Any]) -> str:
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return f"{text}/{p['variant']}" if p.get("variant") else text


# -- the client -------------------------------------------------------------------------------


class RegistryClient:
    """Registry HTTP API v2: resolve references, save images to files, push saved images."""

    def __init__(
        self,
        *,
        insecure_registries: Iterable[str] = (),
        docker_config: Path | None = None,
        session: requests.Session | None = None,
        log: Log = _quiet,
        retries: int = 5,
        platform: str = DEFAULT_PLATFORM,
    ) -> None:
        self._insecure = {r.lower() for r in insecure_registries}
        self._config_path = docker_config_path(docker_config)
        self._creds: tuple[dict[str, _Credentials], dict[str, str]] | None = None
        self._session = session or requests.Session()
        self._log = log
        self._retries = max(1, retries)
        self.platform = _parse_platform(platform)
        self._platform_text = platform
        self._tokens: dict[tuple[str, str], str] = {}
        self._basic: dict[str, str] = {}
        self._schemes: dict[str, str] = {}
        self.backoff = 0.5  # seconds; doubled per attempt, capped at 10 s

    # -- plumbing --

    def plain_http_allowed(self, registry: str) -> bool:
        """Loopback hosts and the registries the caller listed as insecure may be spoken to over HTTP."""
        return is_loopback(registry) or registry.lower() in self._insecure or _hostname(registry) in self._insecure

    def _base(self, registry: str) -> str:
        """``https://host`` — or, where plain HTTP is allowed and HTTPS does not answer, ``http://host``.

        As Docker does for such registries, HTTPS is tried first (one ``GET /v2/``, remembered per
        registry), so a loopback registry with TLS is still spoken to over TLS.
        """
        if registry not in self._schemes:
            scheme = "https"
            if self.plain_http_allowed(registry):
                try:
                    self._session.get(f"https://{registry}/v2/", timeout=(5, 15)).close()
                except requests.RequestException:
                    scheme = "http"
            self._schemes[registry] = scheme
        return f"{self._schemes[registry]}://{registry}"

    def _credentials(self, registry: str) -> tuple[_Credentials | None, str]:
        if self._creds is None:
            self._creds = load_docker_credentials(self._config_path)
        creds, unusable = self._creds
        key = registry.lower()
        found = creds.get(key) or creds.get(_hostname(key))
        why = unusable.get(key) or unusable.get("*") or f"{self._config_path} has no login for it"
        return found, why

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(10.0, self.backoff * (2**attempt)))

    def _auth_header(self, registry: str, scope: str) -> str | None:
        if registry in self._basic:
            return self._basic[registry]
        return self._tokens.get((registry, scope))

    def _authenticate(self, registry: str, scope: str, challenge: str) -> None:
        challenges = dict(parse_challenges(challenge))
        creds, why = self._credentials(registry)
        if "bearer" in challenges:
            params = challenges["bearer"]
            realm = params.get("realm")
            if not realm:
                raise RegistryError(f"{registry}: Bearer challenge without a realm")
            parts = urlsplit(realm)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise RegistryError(f"{registry}: token realm {realm!r} is not an http(s) URL")
            if parts.scheme == "http" and creds and not (is_loopback(parts.netloc) or parts.netloc in self._insecure):
                raise RegistryError(f"{registry}: refusing to send credentials to plain-HTTP token realm {realm}")
            scopes = [scope]
            if params.get("scope") and params["scope"] not in scopes:
                scopes.append(params["scope"])
            query: list[tuple[str, str]] = [("scope", s) for s in scopes]
            if params.get("service"):
                query.insert(0, ("service", params["service"]))
            auth = (creds.username, creds.password) if creds else None
            resp = self._plain_get(realm, query, auth, f"{registry}: token request to {realm}")
            if resp.status_code in (401, 403):
                hint = "credentials refused" if creds else f"needs credentials: {why}"
                raise RegistryError(f"{registry}: token request to {realm} refused (HTTP {resp.status_code}), {hint}")
            if resp.status_code != 200:
                raise RegistryError(f"{registry}: token request to {realm} failed (HTTP {resp.status_code})")
            try:
                doc = resp.json()
                token = doc.get("token") or doc.get("access_token")
            except ValueError:
                token = None
            if not token or not isinstance(token, str):
                raise RegistryError(f"{registry}: token endpoint {realm} returned no token")
            self._tokens[(registry, scope)] = f"Bearer {token}"
            return
        if "basic" in challenges:
            if creds is None:
                raise RegistryError(f"{registry} asks for Basic credentials: {why}")
            if self._base(registry).startswith("http:") and not is_loopback(registry):
                raise RegistryError(f"{registry}: refusing to send Basic credentials over plain HTTP")
            self._basic[registry] = creds.basic()
            return
        schemes = ", ".join(sorted(challenges)) or "none"
        raise RegistryError(f"{registry}: unsupported authentication (challenge schemes: {schemes})")

    def _plain_get(self, url: str, params: list[tuple[str, str]], auth: Any, what: str) -> requests.Response:
        for attempt in range(self._retries):
            try:
                resp = self._session.get(url, params=params, auth=auth, timeout=TIMEOUT)
            except requests.RequestException as exc:
                if attempt + 1 >= self._retries:
                    raise RegistryError(f"{what}: {type(exc).__name__}") from None
                self._sleep(attempt)
                continue
            if resp.status_code in _RETRY_STATUS and attempt + 1 < self._retries:
                resp.close()
                self._sleep(attempt)
                continue
            return resp
        raise AssertionError("unreachable")

    def _request(
        self,
        method: str,
        registry: str,
        repository: str,
        url: str,
        *,
        what: str,
        push: bool = False,
        headers: dict[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        stream: bool = False,
        once: bool = False,
    ) -> requests.Response:
        """One registry request with auth, and retries on connection errors, 408/429/5xx.

        ``body`` makes a fresh request body per attempt (a file region re-read from its start).
        ``once``: no retries here (a blob upload is retried from a new upload session instead).
        """
        retries = 1 if once else self._retries
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        authenticated = False
        attempt = 0
        while True:
            send = dict(headers or {})
            auth = self._auth_header(registry, scope)
            if auth:
                send["Authorization"] = auth
            try:
                resp = self._session.request(
                    method, url, headers=send, data=body() if body else None, stream=stream, timeout=TIMEOUT
                )
            except requests.RequestException as exc:
                attempt += 1
                if attempt >= retries:
                    raise RegistryError(f"{what}: {type(exc).__name__} after {attempt} attempt(s)") from None
                self._log(f"{what}: {type(exc).__name__}, retrying")
                self._sleep(attempt - 1)
                continue
            if resp.status_code == 401 and not authenticated:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.close()
                self._tokens.pop((registry, scope), None)
                self._basic.pop(registry, None)
                self._authenticate(registry, scope, challenge)
                authenticated = True
                continue
            if resp.status_code in _RETRY_STATUS:
                attempt += 1
                if attempt < retries:
                    resp.close()
                    self._log(f"{what}: HTTP {resp.status_code}, retrying")
                    self._sleep(attempt - 1)
                    continue
            return resp

    def _fail(self, resp: requests.Response, what: str) -> RegistryError:
        detail = ""
        try:
            errors = resp.json().get("errors") or []
            detail = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors[:3])
        except (ValueError, AttributeError):
            pass
        if resp.status_code in (401, 403):
            _, why = self._credentials(urlsplit(resp.url).netloc)
            detail = (detail + "; " if detail else "") + f"access denied ({why})"
        resp.close()
        return RegistryError(f"{what}: HTTP {resp.status_code}" + (f" ({detail})" if detail else ""))

    @staticmethod
    def _read_limited(resp: requests.Response, what: str) -> bytes:
        data = bytearray()
        for chunk in resp.iter_content(CHUNK):
            data += chunk
            if len(data) > MAX_JSON_BYTES:
                resp.close()
                raise RegistryError(f"{what}: larger than {MAX_JSON_BYTES} bytes")
        return bytes(data)

    def _get_manifest(self, ref: ImageRef, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest by tag or digest; a digest is verified."""
        url = f"{self._base(ref.registry)}/v2/{ref.repository}/manifests/{reference}"
        what = f"manifest {ref.name}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        resp = self._request("GET", ref.registry, ref.repository, url, what=what, headers={"Accept": ACCEPT})
        if resp.status_code != 200:
            raise self._fail(resp, what)
        data = self._read_limited(resp, what)
        digest = _sha(data)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{what}: the registry served a manifest whose digest is {digest}")
        doc = _json(data, what)
        media_type = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0].strip()
        if doc.get("schemaVersion") == 1:
            raise RegistryError(f"{what}: Docker schema 1 manifests are not supported")
        if media_type not in MANIFEST_TYPES + INDEX_TYPES:
            raise RegistryError(f"{what}: unsupported manifest media type {media_type!r}")
        return data, media_type, digest

    # -- resolve --

    def resolve(self, ref: ImageRef) -> ResolvedImage:
        """Tag or digest -> the index digest (if any) and the platform's image manifest digest."""
        reference = ref.digest or ref.tag or "latest"
        data, media_type, digest = self._get_manifest(ref, reference)
        if media_type in MANIFEST_TYPES:
            return ResolvedImage(ref=ref, index_digest=None, digest=digest, media_type=media_type, size=len(data))
        doc = _json(data, f"index {ref}")
        chosen = self._choose_platform(ref, doc)
        child_digest = str(chosen.get("digest", ""))
        if not _DIGEST_RE.fullmatch(child_digest):
            raise RegistryError(f"index {ref}: entry for {self._platform_text} has no sha256 digest")
        child, child_type, _ = self._get_manifest(ref, child_digest)
        if child_type not in MANIFEST_TYPES:
            raise RegistryError(f"index {ref}: entry {child_digest} is not an image manifest ({child_type})")
        if "size" in chosen and chosen["size"] != len(child):
            raise RegistryError(
                f"index {ref}: manifest {child_digest} is {len(child)} bytes, the index says {chosen['size']}"
            )
        self._log(f"{ref}: index {digest}, {self._platform_text} manifest {child_digest}")
        return ResolvedImage(ref=ref, index_digest=digest, digest=child_digest, media_type=child_type, size=len(child))

    def _choose_platform(self, ref: ImageRef, index: dict[str, Any]) -> dict[str, Any]:
        want_os, want_arch, want_variant = self.platform
        seen = []
        for entry in index.get("manifests") or []:
            platform = entry.get("platform") or {}
            seen.append(_platform_text(platform))
            if platform.get("os") != want_os or platform.get("architecture") != want_arch:
                continue
            if want_variant and platform.get("variant") not in (want_variant, None):
                continue
            return entry
        listed = ", ".join(s for s in seen if s != "unknown/unknown") or "none"
        raise RegistryError(f"image {ref}: no {self._platform_text} manifest in its index (has {listed})")

    # -- save --

    def save(self, resolved: ResolvedImage, dest_dir: Path, *, basename: str, rootfs: bool = True) -> SavedImage:
        """Download and verify every byte of the image; write ``<basename>.oci.tar`` (+ ``.rootfs.tgz``).

        Blobs go to a temporary folder inside ``dest_dir`` (removed on success and on failure), so
        the finished files are renamed into place, never left half-written.
        """
        ref = resolved.ref
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", basename):
            raise ConfigError(f"image {ref}: basename {basename!r} must be a plain file name")
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{basename}.", suffix=".partial"))
        try:
            manifest_bytes, media_type, digest = self._get_manifest(ref, resolved.digest)
            if media_type not in MANIFEST_TYPES:
                raise RegistryError(f"image {ref.name}@{resolved.digest}: not an image manifest ({media_type})")
            manifest = _json(manifest_bytes, f"manifest {ref.name}@{digest}")
            config_desc, layers = self._check_manifest(ref, manifest)
            blobs = tmp / "blobs"
            blobs.mkdir()
            total = sum(int(d["size"]) for d in [config_desc, *layers])
            self._log(f"{ref}: pulling {len(layers)} layer(s), {human(total)}")
            for desc in [config_desc, *layers]:
                self._fetch_blob(ref, desc["digest"], int(desc["size"]), blobs / desc["digest"][7:])
            config = _json((blobs / config_desc["digest"][7:]).read_bytes(), f"config {config_desc['digest']}")
            tag_or_digest = ref.tag or ref.digest or resolved.digest
            annotations = {REF_NAME: tag_or_digest, REPOSITORY_ANNOTATION: ref.name}
            if resolved.index_digest:
                annotations[INDEX_DIGEST_ANNOTATION] = resolved.index_digest
            descriptor: dict[str, Any] = {
                "mediaType": media_type,
                "digest": digest,
                "size": len(manifest_bytes),
                "annotations": annotations,
            }
            platform = {"os": config.get("os"), "architecture": config.get("architecture")}
            if config.get("variant"):
                platform["variant"] = config["variant"]
            if platform["os"] and platform["architecture"]:
                descriptor["platform"] = platform
            (blobs / digest[7:]).write_bytes(manifest_bytes)
            hashes: dict[str, str] = {}
            archive_name = f"{basename}.oci.tar"
            hashes[archive_name] = write_oci_archive(tmp / archive_name, descriptor, blobs)
            rootfs_name = f"{basename}.rootfs.tgz"
            if rootfs:
                inner = config.get("config") or {}
                metadata = {"env": list(inner.get("Env") or []), "user": str(inner.get("User") or "")}
                layer_files = [blobs / d["digest"][7:] for d in layers]
                with (tmp / rootfs_name).open("wb") as out:
                    hashes[rootfs_name] = write_rootfs_tarball(layer_files, out, metadata, log=self._log)
            os.replace(tmp / archive_name, dest_dir / archive_name)
            if rootfs:
                os.replace(tmp / rootfs_name, dest_dir / rootfs_name)
            self._log(f"{ref}: saved {archive_name}" + (f" and {rootfs_name}" if rootfs else ""))
            return SavedImage(
                resolved=resolved,
                oci_archive=dest_dir / archive_name,
                rootfs_tarball=dest_dir / rootfs_name if rootfs else None,
                sha256=hashes,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _check_manifest(ref: ImageRef, manifest: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        what = f"image {ref}"

        def descriptor(d: Any, role: str) -> dict[str, Any]:
            if not isinstance(d, dict) or not _DIGEST_RE.fullmatch(str(d.get("digest", ""))):
                raise RegistryError(f"{what}: {role} has no sha256 digest")
            if not isinstance(d.get("size"), int) or d["size"] < 0:
                raise RegistryError(f"{what}: {role} {d['digest']} has no size")
            if d.get("urls"):
                raise RegistryError(f"{what}: {role} {d['digest']} is a foreign layer (urls), not supported")
            return d

        config = descriptor(manifest.get("config"), "config")
        layers = [descriptor(d, "layer") for d in manifest.get("layers") or []]
        for layer in layers:
            kind = layer.get("mediaType", "")
            if kind not in GZIP_LAYERS:
                why = (
                    "zstd layers are not supported"
                    if "zstd" in kind
                    else "uncompressed layers are not supported"
                    if kind.endswith(".tar") or kind.endswith("tar")
                    else "only gzip layers are supported"
                )
                raise RegistryError(f"{what}: layer {layer['digest']} has media type {kind!r}: {why}")
        return config, layers

    def _fetch_blob(self, ref: ImageRef, digest: str, size: int, dest: Path) -> None:
        """Stream one blob to ``dest``, hashing as it comes; resume with Range after a broken connection."""
        if dest.exists() and dest.stat().st_size == size and "sha256:" + sha256_file(dest)[0] == digest:
            return  # the same blob twice in one image
        url = f"{self._base(ref.registry)}/v2/{ref.repository}/blobs/{digest}"
        what = f"blob {ref.name}@{digest}"
        h = hashlib.sha256()
        have = 0
        failures = 0
        started = last_note = time.monotonic()
        with dest.open("wb") as out:
            while True:
                headers = {"Accept-Encoding": "identity"}
                if have:
                    headers["Range"] = f"bytes={have}-"
                resp = self._request("GET", ref.registry, ref.repository, url, what=what, headers=headers, stream=True)
                if resp.status_code == 206 and have:
                    start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
                    if start != str(have):
                        raise RegistryError(f"{what}: asked for bytes from {have}, got Content-Range {start}")
                elif resp.status_code == 200:
                    if have:
                        self._log(f"{what}: the registry ignored Range, downloading again from the start")
                        out.seek(0)
                        out.truncate()
                        h, have = hashlib.sha256(), 0
                else:
                    raise self._fail(resp, what)
                try:
                    for chunk in resp.iter_content(READ_CHUNK):
                        if have + len(chunk) > size:
                            raise RegistryError(f"{what}: the registry sent more than the {size} bytes announced")
                        out.write(chunk)
                        h.update(chunk)
                        have += len(chunk)
                        now = time.monotonic()
                        if now - last_note >= PROGRESS_EVERY:
                            last_note = now
                            rate = have / max(now - started, 1e-6)
                            self._log(f"{what}: {human(have)} of {human(size)}, {human(rate)}/s")
                except requests.RequestException as exc:
                    failures += 1
                    if failures >= self._retries:
                        raise RegistryError(f"{what}: {type(exc).__name__} after {failures} attempt(s)") from None
                    self._log(f"{what}: {type(exc).__name__} at {human(have)}, resuming")
                    self._sleep(failures - 1)
                    continue
                finally:
                    resp.close()
                if have < size:
                    failures += 1
                    if failures >= self._retries:
                        raise RegistryError(f"{what}: only {have} of {size} bytes after {failures} attempt(s)")
                    self._log(f"{what}: connection ended at {human(have)} of {human(size)}, resuming")
                    continue
                break
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            dest.unlink()
            raise RegistryError(f"{what}: the bytes served do not match the digest (got {actual})")

    # -- push --

    def push(self, oci_archive: Path, target: ImageRef) -> str:
        """Push an archive written by ``save`` to ``target``: blobs, the manifest by digest, then the tag."""
        with tarfile.open(oci_archive, "r:") as tar:
            descriptor, manifest_bytes = read_oci_archive_manifest(tar, oci_archive)
            digest = descriptor["digest"]
            if target.digest and target.digest != digest:
                raise RegistryError(f"{oci_archive}: holds {digest}, not the {target.digest} asked for")
            manifest = _json(manifest_bytes, f"manifest {digest} in {oci_archive}")
            config, layers = self._check_manifest(target, manifest)
            base = f"{self._base(target.registry)}/v2/{target.repository}"
            for desc in [config, *layers]:
                self._push_blob(tar, oci_archive, target, base, desc["digest"], int(desc["size"]))
            for reference in [digest] + ([target.tag] if target.tag else []):
                what = f"manifest {target.name}{':' if reference == target.tag else '@'}{reference}"
                resp = self._request(
                    "PUT",
                    target.registry,
                    target.repository,
                    f"{base}/manifests/{reference}",
                    what=what,
                    push=True,
                    headers={"Content-Type": descriptor["mediaType"]},
                    body=lambda: manifest_bytes,
                )
                if resp.status_code not in (200, 201, 202):
                    raise self._fail(resp, what)
                echoed = resp.headers.get("Docker-Content-Digest")
                resp.close()
                if echoed and echoed != digest:
                    raise RegistryError(f"{what}: the registry stored it as {echoed}, not {digest}")
        self._log(f"pushed {target.name}@{digest}" + (f" (tag {target.tag})" if target.tag else ""))
        return digest

    def _push_blob(
        self, tar: tarfile.TarFile, archive: Path, target: ImageRef, base: str, digest: str, size: int
    ) -> None:
        what = f"blob {target.name}@{digest}"
        resp = self._request("HEAD", target.registry, target.repository, f"{base}/blobs/{digest}", what=what, push=True)
        resp.close()
        if resp.status_code == 200:
            return
        if resp.status_code != 404:
            raise self._fail(resp, what)
        try:
            member = tar.getmember(f"blobs/sha256/{digest[7:]}")
        except KeyError:
            raise RegistryError(f"{archive}: has no blob {digest}") from None
        if member.size != size:
            raise RegistryError(f"{archive}: blob {digest} is {member.size} bytes, the manifest says {size}")
        failures = 0
        while True:
            resp = self._request(
                "POST", target.registry, target.repository, f"{base}/blobs/uploads/", what=what, push=True
            )
            if resp.status_code != 202 or not resp.headers.get("Location"):
                raise self._fail(resp, f"{what}: starting the upload")
            location = urljoin(resp.url, resp.headers["Location"])
            resp.close()
            url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
            bodies: list[_UploadBody] = []

            def body(bodies: list[_UploadBody] = bodies) -> _UploadBody:
                source = tar.extractfile(member)
                assert source is not None
                bodies.append(_UploadBody(source, size))
                return bodies[-1]

            try:
                resp = self._request(
                    "PUT",
                    target.registry,
                    target.repository,
                    url,
                    what=what,
                    push=True,
                    headers={"Content-Type": "application/octet-stream"},
                    body=body,
                    once=True,
                )
            except RegistryError as exc:
                failures += 1
                if failures >= self._retries:
                    raise
                self._log(f"{exc}; starting the upload again")
                self._sleep(failures - 1)
                continue
            sent = bodies[-1] if bodies else None
            if sent is not None and sent._left == 0 and "sha256:" + sent.hash.hexdigest() != digest:
                resp.close()
                raise RegistryError(f"{archive}: blob {digest} does not match its digest")
            if resp.status_code == 201:
                resp.close()
                return
            # A failed PUT ends the upload session on most registries: retry from a new one.
            if (resp.status_code in _RETRY_STATUS or resp.status_code == 404) and failures + 1 < self._retries:
                failures += 1
                self._log(f"{what}: HTTP {resp.status_code}, starting the upload again")
                resp.close()
                self._sleep(failures - 1)
                continue
            raise self._fail(resp, what)


# -- OCI layout archives ----------------------------------------------------------------------


def _tar_info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_oci_archive(path: Path, descriptor: dict[str, Any], blobs: Path) -> str:
    """An OCI image layout with one manifest as a deterministic tar; returns its SHA-256.

    Members sorted, mtime 0, owner 0:0, so the same image always gives the same bytes.
    """
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
    with path.open("wb") as raw:
        writer = _HashingWriter(raw)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            tar.addfile(_tar_info("blobs/", 0, directory=True))
            tar.addfile(_tar_info("blobs/sha256/", 0, directory=True))
            for blob in sorted(blobs.iterdir()):
                with blob.open("rb") as f:
                    tar.addfile(_tar_info(f"blobs/sha256/{blob.name}", blob.stat().st_size), f)
            for name, data in (("index.json", _canonical_json(index)), ("oci-layout", OCI_LAYOUT)):
                tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
        return writer.hash.hexdigest()


def read_oci_archive_manifest(tar: tarfile.TarFile, archive: Path) -> tuple[dict[str, Any], bytes]:
    """The single manifest descriptor of an OCI archive's index.json and the manifest's verified bytes."""

    def member_bytes(name: str) -> bytes:
        try:
            member = tar.getmember(name)
        except KeyError:
            raise RegistryError(f"{archive}: not an OCI archive (no {name})") from None
        if member.size > MAX_JSON_BYTES:
            raise RegistryError(f"{archive}: {name} is too large")
        f = tar.extractfile(member)
        if f is None:
            raise RegistryError(f"{archive}: {name} is not a file")
        return f.read()

    index = _json(member_bytes("index.json"), f"{archive}: index.json")
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise RegistryError(f"{archive}: index.json lists {len(manifests)} manifests, expected 1")
    descriptor = manifests[0]
    digest = str(descriptor.get("digest", ""))
    if not _DIGEST_RE.fullmatch(digest) or descriptor.get("mediaType") not in MANIFEST_TYPES:
        raise RegistryError(f"{archive}: index.json's manifest is not a sha256 image manifest")
    data = member_bytes(f"blobs/sha256/{digest[7:]}")
    if _sha(data) != digest:
        raise RegistryError(f"{archive}: manifest {digest} does not match its digest")
    return descriptor, data


# -- rootfs -----------------------------------------------------------------------------------

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_KEEP_PAX = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")


def _normalize(name: str, layer: Path) -> str:
    """A layer member name -> a relative path ("" for the root); refuses names that climb out."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RegistryError(f"layer {layer.name}: member {name!r} points outside the root")
    return "/".join(parts)


def _ancestors(path: str) -> Iterator[str]:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def _layer_members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                yield tar, member
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RegistryError(f"layer sha256:{path.name}: not a gzip tar ({type(exc).__name__})") from None


def plan_rootfs(layers: Sequence[Path]) -> tuple[dict[str, tuple[int, int, bool]], dict[str, tarfile.TarInfo]]:
    """Which (layer, member) provides each visible path once the layers are applied in order.

    Layers are read top-down: a path taken by a higher layer hides it below; ``.wh.NAME`` hides NAME
    (and what is under it) in lower layers, ``.wh..wh..opq`` hides everything below its folder in
    lower layers; a non-folder in a higher layer hides a lower layer's folder of that name with its
    contents. Within one layer the last member of a name wins (tar semantics).
    Returns path -> (layer, member number, is folder) and the winning folders' headers.
    """
    final: dict[str, tuple[int, int, bool]] = {}
    folders: dict[str, tarfile.TarInfo] = {}
    deleted: set[str] = set()
    opaque: set[str] = set()
    for li in range(len(layers) - 1, -1, -1):
        new_deleted: set[str] = set()
        new_opaque: set[str] = set()
        for mi, (_, member) in enumerate(_layer_members(layers[li])):
            path = _normalize(member.name, layers[li])
            base = path.rsplit("/", 1)[-1]
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            if base == _OPAQUE:
                new_opaque.add(parent)
                continue
            if base.startswith(_WHITEOUT):
                if not base.startswith(".wh..wh."):  # other .wh..wh. names are aufs bookkeeping
                    new_deleted.add(f"{parent}/{base[len(_WHITEOUT) :]}" if parent else base[len(_WHITEOUT) :])
                continue
            if not path:
                continue  # the root folder itself is written once, as rootfs/
            held = final.get(path)
            if held is not None and held[0] > li:
                continue
            if path in deleted or any(
                a in deleted or a in opaque or (a in final and final[a][0] > li and not final[a][2])
                for a in _ancestors(path)
            ):
                continue
            if "" in opaque:
                continue
            final[path] = (li, mi, member.isdir())
            if member.isdir():
                folders[path] = member
            else:
                folders.pop(path, None)
        deleted |= new_deleted
        opaque |= new_opaque
    return final, folders


def _rootfs_info(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for attr in ("size", "mtime", "mode", "type", "uid", "gid", "uname", "gname", "devmajor", "devminor"):
        setattr(info, attr, getattr(member, attr))
    info.mtime = int(member.mtime)
    info.pax_headers = {k: v for k, v in member.pax_headers.items() if k.startswith(_KEEP_PAX)}
    return info


def write_rootfs_tarball(layers: Sequence[Path], out: IO[bytes], metadata: dict[str, Any], *, log: Log = _quiet) -> str:
    """The layers applied in order as one gzip tar of ``rootfs/`` plus ``metadata.json``; returns its SHA-256.

    Two passes over the (gzip) layers: the first decides which member wins each path
    (``plan_rootfs``), the second copies the winners bottom-up so a hard link comes after its target.
    Folders are written first, sorted, so a parent always precedes its children. Nothing is
    extracted to disk and only member headers are kept in memory. Output is deterministic: gzip
    mtime 0 and no file name, members in a fixed order, the layers' own headers.
    """
    final, folders = plan_rootfs(layers)
    writer = _HashingWriter(out)
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=writer, mtime=0, compresslevel=6) as gz,  # type: ignore[arg-type]
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,  # type: ignore[call-overload]
    ):
        meta = json.dumps(metadata, sort_keys=True).encode()
        tar.addfile(_tar_info("metadata.json", len(meta)), io.BytesIO(meta))
        tar.addfile(_tar_info("rootfs/", 0, directory=True))
        # Layers often leave out folders (a layer with only usr/bin/x): write them anyway, 0755 root,
        # so extraction never has to guess; never over a link or file that holds that name.
        implied = {a for p in final for a in _ancestors(p) if a not in final}
        for path in sorted(set(folders) | implied):
            if path in folders:
                tar.addfile(_rootfs_info(folders[path], f"rootfs/{path}"))
            else:
                tar.addfile(_tar_info(f"rootfs/{path}", 0, directory=True))
        written: set[str] = set()
        deferred: list[tuple[tarfile.TarInfo, str]] = []
        for li, layer in enumerate(layers):
            for mi, (src, member) in enumerate(_layer_members(layer)):
                if member.isdir():
                    continue
                path = _normalize(member.name, layer)
                if final.get(path) != (li, mi, False):
                    continue
                info = _rootfs_info(member, f"rootfs/{path}")
                if member.islnk() or member.issym():
                    info.linkname = member.linkname
                if member.islnk():
                    target = _normalize(member.linkname, layer)
                    info.linkname = f"rootfs/{target}"
                    if target not in written:
                        deferred.append((info, target))
                        continue
                if member.isreg():
                    info.type = tarfile.REGTYPE
                    with contextlib.closing(src.extractfile(member)) as data:  # type: ignore[type-var]
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
                written.add(path)
        for info, target in deferred:
            if target in written:
                tar.addfile(info)
            else:
                log(f"rootfs: hard link {info.name} dropped, its target {target} is not in the final image")
    return writer.hash.hexdigest()


# -- publishing ---------------------------------------------------------------------------------


def split_registry(registry: str) -> tuple[str, str]:
    """``HOST[:PORT][/PREFIX]`` -> (host, prefix)."""
    host, _, prefix = registry.strip().strip("/").partition("/")
    if not (host and _HOST_RE.fullmatch(host) and _looks_like_host(host)):
        raise ConfigError(f"registry {registry!r}: expected HOST[:PORT][/PREFIX] with a dotted host or a port")
    if prefix and not _REPOSITORY_RE.fullmatch(prefix):
        raise ConfigError(f"registry {registry!r}: prefix {prefix!r} is not a valid repository path")
    return host, prefix


def _is_saved_archive(path: Path) -> bool:
    """``*.oci.tar``, or any ``*.tar`` that starts as ``save`` writes one (a ``blobs/`` folder first).

    The second form lets a bundle carry archives under other names (``image.tar``) without opening
    every other tar of the bundle: only its first 512-byte header is read.
    """
    if path.name.endswith(".oci.tar"):
        return True
    try:
        with path.open("rb") as f:
            header = f.read(512)
    except OSError:
        return False
    return len(header) == 512 and header[:100].rstrip(b"\0") == b"blobs/"


def publish_images(exploded_dir: Path, registry: str, *, client: RegistryClient, log: Log) -> list[tuple[str, str]]:
    """Push every OCI archive ``save`` wrote under ``exploded_dir`` to ``registry`` (``HOST[:PORT]/PREFIX``).

    Archives are ``*.oci.tar`` files and other ``*.tar`` files that begin like one (see
    ``_is_saved_archive``).

    Each goes to ``<registry>/<its original repository path>``, by digest and by its tag when it has
    one. Returns (target reference, digest) for each archive, in path order.
    """
    host, prefix = split_registry(registry)
    archives = sorted(p for p in exploded_dir.rglob("*.tar") if p.is_file() and _is_saved_archive(p))
    if not archives:
        log(f"publish-images: no OCI archive under {exploded_dir}")
    pushed: list[tuple[str, str]] = []
    for archive in archives:
        with tarfile.open(archive, "r:") as tar:
            descriptor, _ = read_oci_archive_manifest(tar, archive)
        annotations = descriptor.get("annotations") or {}
        original = annotations.get(REPOSITORY_ANNOTATION)
        if not original:
            raise RegistryError(f"{archive}: index.json has no {REPOSITORY_ANNOTATION} annotation")
        source = parse_image_ref(original + "@" + descriptor["digest"])
        repository = f"{prefix}/{source.repository}" if prefix else source.repository
        name = str(annotations.get(REF_NAME, ""))
        tag = name if name and _TAG_RE.fullmatch(name) and not _DIGEST_RE.fullmatch(name) else None
        target = ImageRef(registry=host, repository=repository, tag=tag, digest=descriptor["digest"])
        if not _REPOSITORY_RE.fullmatch(repository):
            raise ConfigError(f"{archive}: target repository {repository!r} is not valid")
        log(f"publish-images: {archive.name} -> {target}")
        digest = client.push(archive, target)
        pushed.append((str(target), digest))
    return pushed
