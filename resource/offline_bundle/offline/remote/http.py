"""Clients for the connected side: HTTPS files, git repositories and GitHub releases.

``offline-bundle fetch`` runs where the internet is reachable, often through a proxy and over links
that drop; what it fetches crosses an air gap where nothing can be fetched again. So every download
here is resumable (a ``.partial`` file continued with ``Range``), retried with backoff, hashed while
it is written and renamed into place only once its SHA-256 is the locked one; git commits are fetched
by their full hash and checked to be that commit. Nothing a URI carries as credentials is ever put in
a message or a log line.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests
import urllib3

from offline_bundle.core.progress import human
from offline_bundle.errors import BundleError, ConfigError

Log = Callable[[str], None]
MiB = 1 << 20
CHUNK = 64 * 1024  # small reads: a connection cut loses at most the bytes of one read
PROGRESS_SECONDS = 5.0
PROGRESS_BYTES = 64 * MiB
MAX_BACKOFF = 30.0
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read (between bytes)
HEX40 = re.compile(r"[0-9a-f]{40}\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)\Z")
_SECRET_QUERY = re.compile(r"(sig|signature|token|secret|password|credential|key)", re.IGNORECASE)


def _quiet(_: str) -> None:
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


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes 100-199/1000`` → (100, 199, 1000); total None for ``*``; None when absent or malformed."""
    m = _CONTENT_RANGE.match((value or "").strip())
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def backoff_delay(attempt: int, base: float, retry_after: str | None = None) -> float:
    """Exponential backoff (base · 2^attempt, at most 30 s); a numeric Retry-After wins when shorter than 30 s."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), MAX_BACKOFF)
    return min(base * (2**attempt), MAX_BACKOFF)


# --- HTTPS downloads -----------------------------------------------------------------------------


def _ca_file(extra: str) -> str:
    """``ca_bundle`` as requests wants it: PEM text or a PEM file, added to (never replacing) the default CAs."""
    from offline_bundle.storage.s3.settings import ca_bundle_file as combined

    if "-----BEGIN CERTIFICATE-----" in extra:
        return combined(extra)
    try:
        return combined(Path(extra).read_text())
    except OSError as e:
        raise ConfigError(f"ca_bundle {extra}: cannot read it: {e.strerror}") from None


class _Retry(Exception):
    """A failure worth another attempt (connection, 5xx, 429, a short body)."""

    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Downloader:
    """Resumable, verified HTTPS downloads (see ``download``).

    Proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) through requests'
    ``trust_env``; the CA store is requests' default (``REQUESTS_CA_BUNDLE`` honoured) plus ``ca_bundle``.
    """

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        log: Log = _quiet,
        retries: int = 5,
        ca_bundle: str | None = None,
        allow_http: bool = False,
        backoff: float = 1.0,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.session = session or requests.Session()
        self.log = log
        self.retries = max(0, retries)
        self.verify: str | None = _ca_file(ca_bundle) if ca_bundle else None
        self.allow_http = allow_http
        self.backoff = backoff
        self.timeout = timeout

    def download(
        self,
        url: str,
        dest: Path,
        *,
        sha256: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Downloaded:
        """Download ``url`` into ``dest``, verified against ``sha256`` when given.

        Streams into ``dest.partial`` (its validators in ``dest.partial.json``), continuing a partial
        file left by an earlier attempt or run with ``Range`` + ``If-Range``; a 200 where a 206 was
        asked for starts again from byte 0. Connection errors, 5xx, 429 and short bodies are retried
        with backoff (an attempt that made progress does not count). The bytes are hashed as they are
        written (a resumed file's bytes first); ``dest`` appears only when the whole file is there and
        its SHA-256 is the expected one, otherwise nothing is left and RemoteError names the URL, the
        expected and the actual digest. When ``dest`` already holds the expected bytes, nothing is fetched.
        """
        shown = redact_url(url)
        check_scheme(url, allow_http=self.allow_http)
        expected = normalise_sha256(sha256) if sha256 else None
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if expected and dest.is_file():
            have, size = sha256_file(dest)
            if have == expected:
                self.log(f"{dest.name}: already downloaded ({human(size)}, sha256 {expected[:12]}…)")
                return Downloaded(dest, have, size)
        partial = dest.with_name(dest.name + ".partial")
        meta_path = dest.with_name(dest.name + ".partial.json")
        state = _State()
        validators = _load_validators(meta_path, url, partial)
        if validators is not None:
            state.hasher, state.offset = _hash_file_state(partial)
            state.validators = validators
            if state.offset:
                self.log(f"{shown}: resuming at {human(state.offset)}")
        else:
            _remove(partial, meta_path)

        failures = 0
        while True:
            before = state.offset
            try:
                self._attempt(url, partial, meta_path, state, headers)
                break
            except _Retry as e:
                if state.offset > before:
                    failures = 0  # progress was made: only attempts in a row that made none count
                failures += 1
                if failures > self.retries:
                    kept = "nothing kept"
                    if state.offset and state.validators:
                        kept = f"{human(state.offset)} kept in {partial.name} to resume"
                    else:  # without an ETag or a date, a later run could not tell whether it is the same file
                        _remove(partial, meta_path)
                    raise RemoteError(f"{shown}: {e} (gave up after {failures} attempts in a row; {kept})") from None
                delay = backoff_delay(failures - 1, self.backoff, e.retry_after)
                self.log(f"{shown}: {e}; retrying in {delay:.1f} s")
                time.sleep(delay)

        actual = state.hasher.hexdigest()
        if expected and actual != expected:
            _remove(partial, meta_path)
            raise RemoteError(f"{shown}: SHA-256 mismatch: expected {expected}, got {actual}; the download was removed")
        os.replace(partial, dest)
        _remove(meta_path)
        self.log(f"{dest.name}: {human(state.offset)}, sha256 {actual}")
        return Downloaded(dest, actual, state.offset)

    def _attempt(
        self, url: str, partial: Path, meta_path: Path, state: _State, headers: Mapping[str, str] | None
    ) -> None:
        """One GET that leaves ``state`` equal to what is on disk; returns when the file is whole.

        Raises _Retry for what another attempt may cure, RemoteError for what it cannot.
        """
        shown = redact_url(url)
        req = dict(headers or {})
        req.setdefault("Accept-Encoding", "identity")  # the bytes as stored: the hash is of those
        if state.offset:
            req["Range"] = f"bytes={state.offset}-"
            validator = state.validators.get("etag") or state.validators.get("last_modified")
            if validator:
                req["If-Range"] = validator
        kwargs: dict[str, Any] = {"stream": True, "timeout": self.timeout, "headers": req}
        if self.verify:
            kwargs["verify"] = self.verify
        try:
            resp = self.session.get(url, **kwargs)
        except requests.exceptions.SSLError as e:
            raise RemoteError(f"{shown}: TLS failed: {_reason(e)}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise _Retry(f"connection failed: {_reason(e)}") from None
        except requests.exceptions.RequestException as e:
            raise RemoteError(f"{shown}: {e.__class__.__name__}: {_reason(e)}") from None
        with resp:
            if resp.history:
                check_scheme(resp.url, allow_http=self.allow_http)
            status = resp.status_code
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status}", resp.headers.get("Retry-After"))
            if status == 416 and state.offset:
                whole = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", "").strip())
                if whole and int(whole.group(1)) == state.offset:
                    return  # the partial file was already whole
                self.log(f"{shown}: the server refused to resume at {human(state.offset)}; starting again")
                state.restart(partial, meta_path)
                raise _Retry("range not satisfiable", "0")
            if status not in (200, 206):
                raise RemoteError(f"{shown}: HTTP {status} {resp.reason or ''}".rstrip())
            total: int | None = None
            if status == 206:
                cr = parse_content_range(resp.headers.get("Content-Range"))
                if cr is None or cr[0] != state.offset:
                    self.log(f"{shown}: the server answered another range than asked; starting again")
                    state.restart(partial, meta_path)
                    raise _Retry("unexpected Content-Range", "0")
                total = cr[2]
                mode = "ab"
            else:
                if state.offset:
                    self.log(f"{shown}: the server sent the whole file instead of the rest; starting again")
                state.restart(partial, meta_path)
                mode = "wb"
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                state.validators = _validators(resp)
                meta_path.write_text(json.dumps({"url": url, **state.validators}))
            progress = _Progress(self.log, shown, total, state.offset)
            # The bytes as sent (never decoded from a Content-Encoding): what curl saves and what a lock pins.
            stream = resp.raw.stream(CHUNK, decode_content=False)
            with open(partial, mode) as f:
                while True:
                    try:
                        chunk = next(stream, None)
                    except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as e:
                        raise _Retry(f"connection lost at {human(state.offset)}: {_reason(e)}") from None
                    if chunk is None:
                        break
                    try:
                        f.write(chunk)
                    except OSError as e:
                        raise RemoteError(f"{partial}: cannot write: {e.strerror or e}") from None
                    state.hasher.update(chunk)
                    state.offset += len(chunk)
                    progress.update(state.offset)
            if total is not None and state.offset < total:
                raise _Retry(f"the body ended at {human(state.offset)} of {human(total)}")
            if total is not None and state.offset > total:
                state.restart(partial, meta_path)
                raise RemoteError(f"{shown}: the server sent more bytes than the {total} it announced")


@dataclass
class _State:
    """What is in the ``.partial`` file: its length, the SHA-256 of those bytes, the resource's validators."""

    offset: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    validators: dict[str, str] = field(default_factory=dict)

    def restart(self, partial: Path, meta_path: Path) -> None:
        _remove(partial, meta_path)
        self.offset, self.hasher, self.validators = 0, hashlib.sha256(), {}


class _Progress:
    def __init__(self, log: Log, label: str, total: int | None, start: int) -> None:
        self.log, self.label, self.total = log, label, total
        self.last_time = time.monotonic()
        self.last_bytes = start

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last_time >= PROGRESS_SECONDS or done - self.last_bytes >= PROGRESS_BYTES:
            rate = (done - self.last_bytes) / max(now - self.last_time, 1e-6)
            of = f" of {human(self.total)}" if self.total else ""
            self.log(f"{self.label}: {human(done)}{of}, {human(rate)}/s")
            self.last_time, self.last_bytes = now, done


def _reason(e: BaseException) -> str:
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


def _validators(resp: requests.Response) -> dict[str, str]:
    """The strong ETag or the Last-Modified date, which make ``If-Range`` safe (weak ETags may not be used)."""
    out: dict[str, str] = {}
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        out["etag"] = etag
    if resp.headers.get("Last-Modified"):
        out["last_modified"] = resp.headers["Last-Modified"]
    return out


def _load_validators(meta_path: Path, url: str, partial: Path) -> dict[str, str] | None:
    """The validators of a partial file of the same URL, or None when it cannot be resumed safely."""
    if not partial.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("url") != url:
        return None
    v = {k: str(meta[k]) for k in ("etag", "last_modified") if meta.get(k)}
    return v or None  # without a validator a partial file might be of another version of the resource


def _hash_file_state(path: Path) -> tuple[Any, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            n += len(block)
    return h, n


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    h, n = _hash_file_state(path)
    return h.hexdigest(), n


def _remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# --- git -----------------------------------------------------------------------------------------

_TEMP_DIRS: list[str] = []


def _temp_dir(prefix: str) -> Path:
    path = tempfile.mkdtemp(prefix=prefix)
    if not _TEMP_DIRS:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _TEMP_DIRS])
    _TEMP_DIRS.append(path)
    return Path(path)


@contextlib.contextmanager
def git_env(private_key: str | None = None) -> Iterator[dict[str, str]]:
    """The environment for git: never prompt; with ``private_key``, SSH uses it from a 0600 temp file
    that is deleted afterwards (host keys are not checked, as Concourse's git resource does)."""
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.pop("GIT_ASKPASS", None)
    env.pop("SSH_ASKPASS", None)
    if not private_key:
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        yield env
        return
    folder = Path(tempfile.mkdtemp(prefix="ob-ssh-"))
    try:
        os.chmod(folder, 0o700)
        key = folder / "id"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private_key.strip() + "\n")
        env["GIT_SSH_COMMAND"] = (
            f"ssh -i {shlex.quote(str(key))} -o IdentitiesOnly=yes -o BatchMode=yes "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )
        yield env
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _git(args: list[str], *, env: Mapping[str, str], what: str, cwd: Path | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=dict(env), capture_output=True, timeout=600)
    except FileNotFoundError:
        raise RemoteError(f"{what}: the git binary is not installed") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{what}: git {args[0]} took more than 10 minutes") from None
    if proc.returncode != 0:
        raise RemoteError(f"{what}: git {args[0]} failed: {_git_error(proc.stderr)}")
    return proc.stdout


def _git_error(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith(("fatal:", "error:", "ERROR:", "ssh:"))] or lines
    text = " / ".join(wanted[-2:]) or "no message"
    return redact_url_in_text(text)[:400]


def redact_url_in_text(text: str) -> str:
    """Hide ``user:pass@`` of any URL inside ``text`` (git repeats the URI in its errors)."""
    return re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)


def _ls_remote(uri: str, patterns: list[str], env: Mapping[str, str], what: str) -> dict[str, str]:
    out = _git(["ls-remote", "--symref", "--", uri, *patterns], env=env, what=what)
    refs: dict[str, str] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        value, _, name = line.partition("\t")
        if value.startswith("ref: "):
            refs["symref:" + name] = value[5:].strip()
        elif name:
            refs[name] = value.strip()
    return refs


def git_resolve(
    uri: str,
    ref: str | None,
    *,
    log: Log = _quiet,
    private_key: str | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The commit that ``ref`` names in the repository at ``uri``, from ``git ls-remote``.

    ``ref`` None → the remote's HEAD; a full ``refs/…`` name as is; otherwise the branch of that name,
    else the tag (an annotated tag is peeled to its commit). A 40-hex ``ref`` is a commit: it is
    returned when a ref points at it, else after fetching it (which proves it exists).
    """
    what = f"{redact_uri(uri)} ({ref or 'HEAD'})"
    ref = ref.strip() if ref else None
    with git_env(private_key) as env:
        if ref and HEX40.match(ref.lower()):
            commit = ref.lower()
            refs = _ls_remote(uri, [], env, what)
            if commit not in refs.values():
                _fetch_commit(uri, commit, _repo_cache(uri, cache_dir), env, what)
            log(f"{redact_uri(uri)}: commit {commit} exists")
            return commit
        if ref is None:
            refs = _ls_remote(uri, ["HEAD"], env, what)
            commit = refs.get("HEAD")
            if not commit:
                raise RemoteError(f"{what}: the repository has no HEAD (empty, or HEAD names a missing branch)")
            log(f"{redact_uri(uri)}: HEAD ({refs.get('symref:HEAD', 'detached')}) is {commit}")
            return commit
        if ref.startswith("refs/"):
            candidates = [ref + "^{}", ref]
        else:
            candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"]
        patterns = candidates  # ls-remote prints a peeled tag (name^{}) only when asked for by that name
        refs = _ls_remote(uri, patterns, env, what)
        for name in candidates:
            if name in refs:
                log(f"{redact_uri(uri)}: {name.removesuffix('^{}')} is {refs[name]}")
                return refs[name]
        raise RemoteError(f"{what}: no branch or tag of that name")


def _repo_cache(uri: str, cache_dir: Path | None) -> Path:
    """A bare repository per URI (keyed by its hash; the URI itself is never written into it)."""
    base = cache_dir or _DEFAULT_CACHE.get("dir") or _DEFAULT_CACHE.setdefault("dir", _temp_dir("ob-git-"))
    repo = Path(base) / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if not (repo / "HEAD").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", str(repo)], env=os.environ, what=f"cache for {redact_uri(uri)}")
    return repo


_DEFAULT_CACHE: dict[str, Path] = {}


def _fetch_commit(uri: str, commit: str, repo: Path, env: Mapping[str, str], what: str) -> None:
    """Make ``commit`` present in ``repo``: a shallow fetch of exactly that commit, unless it is there."""
    if not HEX40.match(commit):
        raise ConfigError(f"{what}: a commit must be 40 hex digits, got {commit!r}")
    probe = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"], env=dict(env), capture_output=True
    )
    if probe.returncode == 0:
        return
    _git(
        ["-C", str(repo), "fetch", "--quiet", "--depth=1", "--no-tags", "--no-write-fetch-head", "--", uri, commit],
        env=env,
        what=f"{what}: fetching commit {commit}",
    )
    got = _git(["-C", str(repo), "rev-parse", "--verify", f"{commit}^{{commit}}"], env=env, what=what)
    if got.decode().strip() != commit:
        raise RemoteError(f"{what}: fetched {got.decode().strip()} where commit {commit} was asked for")


def git_read_file(
    uri: str,
    commit: str,
    path: str,
    *,
    cache_dir: Path | None = None,
    private_key: str | None = None,
) -> bytes:
    """The bytes of ``path`` in the repository at ``commit`` (fetched shallow into a cache reused across calls)."""
    what = f"{redact_uri(uri)} at {commit}"
    repo = _repo_cache(uri, cache_dir)
    with git_env(private_key) as env:
        _fetch_commit(uri, commit.lower(), repo, env, what)
        clean = path.strip("/")
        proc = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "blob", f"{commit.lower()}:{clean}"], env=env, capture_output=True
        )
    if proc.returncode != 0:
        raise RemoteError(f"{what}: no file {clean!r} in that commit")
    return proc.stdout


def git_archive(
    uri: str,
    commit: str,
    dest: Path,
    *,
    prefix: str = "",
    cache_dir: Path | None = None,
    private_key: str | None = None,
    log: Log = _quiet,
) -> Downloaded:
    """The tree of ``commit`` as a .tar.gz at ``dest``, the same bytes for the same commit.

    ``git archive`` takes file times from the commit and compresses with git's own gzip (no name, no
    time), so the bytes depend only on the commit, the prefix and the git version. The fetched commit
    is checked to be the one asked for before archiving.
    """
    what = f"{redact_uri(uri)} at {commit}"
    commit = commit.lower()
    repo = _repo_cache(uri, cache_dir)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with git_env(private_key) as env:
        _fetch_commit(uri, commit, repo, env, what)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        try:
            _git(
                ["-C", str(repo), "archive", "--format=tar.gz", f"--prefix={prefix}", "-o", str(partial), commit],
                env=env,
                what=what,
            )
        except BaseException:
            _remove(partial)
            raise
    digest, size = sha256_file(partial)
    os.replace(partial, dest)
    log(f"{dest.name}: {redact_uri(uri)} at {commit}, {human(size)}, sha256 {digest}")
    return Downloaded(dest, digest, size)


# --- GitHub releases -----------------------------------------------------------------------------

DEFAULT_GITHUB_API = "https://api.github.com/"
DEFAULT_TAG_FILTER = r"v?([^v].*)"  # the github-release resource's default
MAX_RELEASE_PAGES = 20


@dataclass(frozen=True)
class Asset:
    name: str
    url: str  # browser_download_url: public, redirects to the file
    size: int
    sha256: str | None  # from the API's "digest" ("sha256:…") when GitHub gives one
    api_url: str | None = None  # the asset's API URL: with Accept: application/octet-stream, works with a token


def github_headers(source: Mapping[str, Any]) -> dict[str, str]:
    """Headers for the GitHub REST API (and for downloading an asset's ``api_url`` of a private repository)."""
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if source.get("access_token"):
        headers["Authorization"] = f"Bearer {source['access_token']}"
    return headers


def asset_request(asset: Asset, source: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """URL and headers to download ``asset``: with an ``access_token``, the asset's API URL (the only one that
    works for a private repository; GitHub redirects to storage elsewhere and requests drops the token on
    the way), else the public ``browser_download_url``."""
    if source.get("access_token") and asset.api_url:
        return asset.api_url, {**github_headers(source), "Accept": "application/octet-stream"}
    return asset.url, {}


def release_version(tag: str, tag_filter: str | None) -> str | None:
    """The version a tag stands for under ``tag_filter`` (its first group, else the whole match); None if no match."""
    try:
        m = re.search(tag_filter or DEFAULT_TAG_FILTER, tag)
    except re.error as e:
        raise ConfigError(f"tag_filter {tag_filter!r} is not a regular expression: {e}") from None
    if not m:
        return None
    return m.group(1) if m.groups() and m.group(1) is not None else m.group(0)


def choose_release(releases: list[Mapping[str, Any]], source: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The newest release the github-release resource's ``check`` would report for ``source``.

    Drafts never; pre-releases only with ``pre_release: true``; full releases unless ``release: false``;
    the tag must match ``tag_filter``. Newest by SemVer of the version when every candidate has one
    (``order_by: version``, the default), else (or with ``order_by: time``) by creation time.
    """
    from offline_bundle.core.versions import semver_key

    want_pre = bool(source.get("pre_release", False))
    want_full = source.get("release", True) is not False
    candidates: list[tuple[Mapping[str, Any], str]] = []
    for r in releases:
        if r.get("draft"):
            continue
        if r.get("prerelease") and not want_pre:
            continue
        if not r.get("prerelease") and not want_full:
            continue
        tag = str(r.get("tag_name") or "")
        version = release_version(tag, source.get("tag_filter"))
        if not tag or version is None:
            continue
        candidates.append((r, version))
    if not candidates:
        return None
    keys = [semver_key(v) for _, v in candidates]
    if source.get("order_by", "version") == "version" and all(k is not None for k in keys):
        return max(zip(candidates, keys, strict=True), key=lambda ck: ck[1])[0][0]  # type: ignore[arg-type,return-value]
    return max(candidates, key=lambda c: (str(c[0].get("created_at") or ""), int(c[0].get("id") or 0)))[0]


def _assets(release: Mapping[str, Any]) -> list[Asset]:
    out = []
    for a in release.get("assets") or []:
        digest = a.get("digest")
        sha = None
        if isinstance(digest, str) and digest.lower().startswith("sha256:") and HEX64.match(digest[7:].lower()):
            sha = digest[7:].lower()
        out.append(Asset(str(a["name"]), str(a["browser_download_url"]), int(a.get("size") or 0), sha, a.get("url")))
    return out


def github_release_assets(
    source: Mapping[str, Any],
    *,
    tag: str | None,
    session: requests.Session | None = None,
    ca_bundle: str | None = None,
    log: Log = _quiet,
) -> tuple[str, list[Asset]]:
    """The release of a Concourse ``github-release`` source: ``tag`` when given, else the newest that
    ``choose_release`` picks. Returns (tag, assets); filtering assets by ``globs`` is the caller's."""
    owner, repo = source.get("owner"), source.get("repository")
    if not owner or not repo:
        raise ConfigError("github-release source: owner and repository are required")
    api = str(source.get("github_api_url") or DEFAULT_GITHUB_API)
    if not api.endswith("/"):
        api += "/"
    check_scheme(api)
    session = session or requests.Session()
    headers = github_headers(source)
    verify = _ca_file(ca_bundle) if ca_bundle else None
    name = f"{owner}/{repo}"
    base = f"{api}repos/{quote(str(owner), safe='')}/{quote(str(repo), safe='')}/releases"

    def get(url: str) -> requests.Response:
        try:
            kwargs: dict[str, Any] = {"headers": headers, "timeout": DEFAULT_TIMEOUT}
            if verify:
                kwargs["verify"] = verify
            resp = session.get(url, **kwargs)
        except requests.exceptions.RequestException as e:
            raise RemoteError(f"GitHub releases of {name} ({redact_url(url)}): {_reason(e)}") from None
        if resp.status_code in (401, 403):
            hint = " (rate limit? set access_token)" if resp.headers.get("X-RateLimit-Remaining") == "0" else ""
            raise RemoteError(f"GitHub releases of {name}: HTTP {resp.status_code} from {redact_url(url)}{hint}")
        return resp

    if tag:
        resp = get(f"{base}/tags/{quote(tag, safe='')}")
        if resp.status_code == 404:
            raise RemoteError(f"GitHub release {tag!r} of {name}: not found")
        if resp.status_code != 200:
            raise RemoteError(f"GitHub release {tag!r} of {name}: HTTP {resp.status_code}")
        release = resp.json()
        if release.get("draft"):
            raise RemoteError(f"GitHub release {tag!r} of {name}: is a draft")
    else:
        releases: list[Mapping[str, Any]] = []
        url: str | None = f"{base}?per_page=100"
        for _ in range(MAX_RELEASE_PAGES):
            if not url:
                break
            resp = get(url)
            if resp.status_code != 200:
                raise RemoteError(f"GitHub releases of {name}: HTTP {resp.status_code}")
            releases.extend(resp.json())
            url = resp.links.get("next", {}).get("url")
        chosen = choose_release(releases, source)
        if chosen is None:
            raise RemoteError(f"GitHub releases of {name}: none matches (drafts, pre_release, release, tag_filter)")
        release = chosen
    found = str(release["tag_name"])
    assets = _assets(release)
    log(f"GitHub release {found} of {name}: {len(assets)} assets")
    return found, assets
