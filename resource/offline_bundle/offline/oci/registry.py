"""The registry client: images from an OCI/Docker registry into files, and from those files into another registry.

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

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests

from offline_bundle.core.log import Log
from offline_bundle.core.progress import human
from offline_bundle.errors import ConfigError
from offline_bundle.offline.oci.auth import (
    Credentials,
    docker_config_path,
    hostname,
    is_loopback,
    load_docker_credentials,
    parse_challenges,
)
from offline_bundle.offline.oci.layout import (
    MAX_JSON_BYTES,
    json_object,
    read_oci_archive_manifest,
    sha256_digest,
    write_oci_archive,
)
from offline_bundle.offline.oci.reference import (
    ACCEPT,
    DEFAULT_PLATFORM,
    DIGEST_RE,
    GZIP_LAYERS,
    INDEX_DIGEST_ANNOTATION,
    INDEX_TYPES,
    MANIFEST_TYPES,
    REF_NAME,
    REPOSITORY_ANNOTATION,
    ImageRef,
    RegistryError,
    ResolvedImage,
    SavedImage,
)
from offline_bundle.offline.oci.rootfs import write_rootfs_tarball
from offline_bundle.offline.remote.common import quiet, sha256_file

CHUNK = 1 << 20
# Blob reads: a connection that breaks loses the chunk being read, so keep it small enough that a
# resume repeats little (and large enough that the per-chunk overhead stays invisible).
READ_CHUNK = 64 << 10
PROGRESS_EVERY = 5.0
TIMEOUT = (15, 120)
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


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

    @property
    def whole(self) -> bool:
        """Every byte of the region was read (and so hashed)."""
        return self._left == 0


def _parse_platform(text: str) -> tuple[str, str, str | None]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(f"platform {text!r} is not os/arch[/variant] (e.g. linux/amd64)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _platform_text(p: dict[str, Any]) -> str:
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return f"{text}/{p['variant']}" if p.get("variant") else text


class RegistryClient:
    """Registry HTTP API v2: resolve references, save images to files, push saved images."""

    def __init__(
        self,
        *,
        insecure_registries: Iterable[str] = (),
        docker_config: Path | None = None,
        session: requests.Session | None = None,
        log: Log = quiet,
        retries: int = 5,
        platform: str = DEFAULT_PLATFORM,
    ) -> None:
        self._insecure = {r.lower() for r in insecure_registries}
        self._config_path = docker_config_path(docker_config)
        self._creds: tuple[dict[str, Credentials], dict[str, str]] | None = None
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
        return is_loopback(registry) or registry.lower() in self._insecure or hostname(registry) in self._insecure

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

    def _credentials(self, registry: str) -> tuple[Credentials | None, str]:
        if self._creds is None:
            self._creds = load_docker_credentials(self._config_path)
        creds, unusable = self._creds
        key = registry.lower()
        found = creds.get(key) or creds.get(hostname(key))
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
            token = self._bearer_token(registry, scope, challenges["bearer"], creds, why)
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

    def _bearer_token(
        self, registry: str, scope: str, params: dict[str, str], creds: Credentials | None, why: str
    ) -> str:
        """A token from the realm a Bearer challenge names, asked with the Basic login when there is one."""
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
        return token

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
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{what}: the registry served a manifest whose digest is {digest}")
        doc = json_object(data, what)
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
        doc = json_object(data, f"index {ref}")
        chosen = self._choose_platform(ref, doc)
        child_digest = str(chosen.get("digest", ""))
        if not DIGEST_RE.fullmatch(child_digest):
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
            blobs = tmp / "blobs"
            blobs.mkdir()
            descriptor, config, layers = self._pull(resolved, blobs)
            archive_name = f"{basename}.oci.tar"
            rootfs_name = f"{basename}.rootfs.tgz"
            hashes = {archive_name: write_oci_archive(tmp / archive_name, descriptor, blobs)}
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

    def _pull(
        self, resolved: ResolvedImage, blobs: Path
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """Every blob of the image into ``blobs`` (the manifest too); its index.json descriptor, config, layers."""
        ref = resolved.ref
        manifest_bytes, media_type, digest = self._get_manifest(ref, resolved.digest)
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"image {ref.name}@{resolved.digest}: not an image manifest ({media_type})")
        manifest = json_object(manifest_bytes, f"manifest {ref.name}@{digest}")
        config_desc, layers = self._check_manifest(ref, manifest)
        total = sum(int(d["size"]) for d in [config_desc, *layers])
        self._log(f"{ref}: pulling {len(layers)} layer(s), {human(total)}")
        for desc in [config_desc, *layers]:
            self._fetch_blob(ref, desc["digest"], int(desc["size"]), blobs / desc["digest"][7:])
        config = json_object((blobs / config_desc["digest"][7:]).read_bytes(), f"config {config_desc['digest']}")
        (blobs / digest[7:]).write_bytes(manifest_bytes)
        return _archive_descriptor(resolved, media_type, digest, len(manifest_bytes), config), config, layers

    @staticmethod
    def _check_manifest(ref: ImageRef, manifest: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        what = f"image {ref}"

        def descriptor(d: Any, role: str) -> dict[str, Any]:
            if not isinstance(d, dict) or not DIGEST_RE.fullmatch(str(d.get("digest", ""))):
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
        failures = 0
        with dest.open("wb") as out:
            blob = _BlobFile(out, size, what, self._log)
            while True:
                try:
                    self._fetch_rest(ref, url, blob)
                except requests.RequestException as exc:
                    failures += 1
                    if failures >= self._retries:
                        raise RegistryError(f"{what}: {type(exc).__name__} after {failures} attempt(s)") from None
                    self._log(f"{what}: {type(exc).__name__} at {human(blob.have)}, resuming")
                    self._sleep(failures - 1)
                    continue
                if blob.have >= size:
                    break
                failures += 1
                if failures >= self._retries:
                    raise RegistryError(f"{what}: only {blob.have} of {size} bytes after {failures} attempt(s)")
                self._log(f"{what}: connection ended at {human(blob.have)} of {human(size)}, resuming")
        actual = "sha256:" + blob.hash.hexdigest()
        if actual != digest:
            dest.unlink()
            raise RegistryError(f"{what}: the bytes served do not match the digest (got {actual})")

    def _fetch_rest(self, ref: ImageRef, url: str, blob: _BlobFile) -> None:
        """One GET of what ``blob`` lacks (``Range`` from what it has), appended to it as it arrives."""
        what = blob.what
        headers = {"Accept-Encoding": "identity"}
        if blob.have:
            headers["Range"] = f"bytes={blob.have}-"
        resp = self._request("GET", ref.registry, ref.repository, url, what=what, headers=headers, stream=True)
        try:
            if resp.status_code == 206 and blob.have:
                start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
                if start != str(blob.have):
                    raise RegistryError(f"{what}: asked for bytes from {blob.have}, got Content-Range {start}")
            elif resp.status_code == 200:
                if blob.have:
                    self._log(f"{what}: the registry ignored Range, downloading again from the start")
                    blob.restart()
            else:
                raise self._fail(resp, what)
            for chunk in resp.iter_content(READ_CHUNK):
                blob.write(chunk)
        finally:
            resp.close()

    # -- push --

    def push(self, oci_archive: Path, target: ImageRef) -> str:
        """Push an archive written by ``save`` to ``target``: blobs, the manifest by digest, then the tag."""
        with tarfile.open(oci_archive, "r:") as tar:
            descriptor, manifest_bytes = read_oci_archive_manifest(tar, oci_archive)
            digest = descriptor["digest"]
            if target.digest and target.digest != digest:
                raise RegistryError(f"{oci_archive}: holds {digest}, not the {target.digest} asked for")
            manifest = json_object(manifest_bytes, f"manifest {digest} in {oci_archive}")
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
        member = self._blob_to_push(tar, archive, target, base, digest, size)
        if member is None:
            return
        failures = 0
        while True:
            url = self._start_upload(target, base, digest, what)
            try:
                resp, sent = self._put_blob(tar, member, size, target, url, what)
            except RegistryError as exc:
                failures += 1
                if failures >= self._retries:
                    raise
                self._log(f"{exc}; starting the upload again")
                self._sleep(failures - 1)
                continue
            if sent is not None and sent.whole and "sha256:" + sent.hash.hexdigest() != digest:
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

    def _blob_to_push(
        self, tar: tarfile.TarFile, archive: Path, target: ImageRef, base: str, digest: str, size: int
    ) -> tarfile.TarInfo | None:
        """The archive's member holding the blob, or None when the target registry already has it."""
        what = f"blob {target.name}@{digest}"
        resp = self._request("HEAD", target.registry, target.repository, f"{base}/blobs/{digest}", what=what, push=True)
        resp.close()
        if resp.status_code == 200:
            return None
        if resp.status_code != 404:
            raise self._fail(resp, what)
        try:
            member = tar.getmember(f"blobs/sha256/{digest[7:]}")
        except KeyError:
            raise RegistryError(f"{archive}: has no blob {digest}") from None
        if member.size != size:
            raise RegistryError(f"{archive}: blob {digest} is {member.size} bytes, the manifest says {size}")
        return member

    def _start_upload(self, target: ImageRef, base: str, digest: str, what: str) -> str:
        """A new upload session; returns the URL its one monolithic PUT goes to."""
        resp = self._request("POST", target.registry, target.repository, f"{base}/blobs/uploads/", what=what, push=True)
        if resp.status_code != 202 or not resp.headers.get("Location"):
            raise self._fail(resp, f"{what}: starting the upload")
        location = urljoin(resp.url, resp.headers["Location"])
        resp.close()
        return f"{location}{'&' if '?' in location else '?'}digest={digest}"

    def _put_blob(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, size: int, target: ImageRef, url: str, what: str
    ) -> tuple[requests.Response, _UploadBody | None]:
        """One PUT of the blob, read from the archive; the response and the body last sent (to check its hash)."""
        bodies: list[_UploadBody] = []

        def body() -> _UploadBody:
            source = tar.extractfile(member)
            assert source is not None
            bodies.append(_UploadBody(source, size))
            return bodies[-1]

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
        return resp, bodies[-1] if bodies else None


def _archive_descriptor(
    resolved: ResolvedImage, media_type: str, digest: str, size: int, config: dict[str, Any]
) -> dict[str, Any]:
    """The manifest's entry in the archive's index.json: where it came from (annotations) and its platform."""
    ref = resolved.ref
    tag_or_digest = ref.tag or ref.digest or resolved.digest
    annotations = {REF_NAME: tag_or_digest, REPOSITORY_ANNOTATION: ref.name}
    if resolved.index_digest:
        annotations[INDEX_DIGEST_ANNOTATION] = resolved.index_digest
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size, "annotations": annotations}
    platform = {"os": config.get("os"), "architecture": config.get("architecture")}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    if platform["os"] and platform["architecture"]:
        descriptor["platform"] = platform
    return descriptor


class _BlobFile:
    """The part of one blob on disk so far, hashed as written, so a broken connection resumes from its end."""

    def __init__(self, out: IO[bytes], size: int, what: str, log: Log) -> None:
        self.out, self.size, self.what, self._log = out, size, what, log
        self.hash = hashlib.sha256()
        self.have = 0
        self._started = self._last_note = time.monotonic()

    def restart(self) -> None:
        self.out.seek(0)
        self.out.truncate()
        self.hash, self.have = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        if self.have + len(chunk) > self.size:
            raise RegistryError(f"{self.what}: the registry sent more than the {self.size} bytes announced")
        self.out.write(chunk)
        self.hash.update(chunk)
        self.have += len(chunk)
        now = time.monotonic()
        if now - self._last_note >= PROGRESS_EVERY:
            self._last_note = now
            rate = self.have / max(now - self._started, 1e-6)
            self._log(f"{self.what}: {human(self.have)} of {human(self.size)}, {human(rate)}/s")
