"""Resumable, verified HTTPS downloads for the connected side.

``offline-bundle fetch`` runs where the internet is reachable, often through a proxy and over links
that drop; what it fetches crosses an air gap where nothing can be fetched again. So every download
here is resumable (a ``.partial`` file continued with ``Range``), retried with backoff, hashed while
it is written and renamed into place only once its SHA-256 is the locked one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from offline_bundle.core.log import Log
from offline_bundle.core.progress import human
from offline_bundle.errors import ConfigError
from offline_bundle.offline.remote.common import (
    CHUNK,
    Downloaded,
    RemoteError,
    check_scheme,
    hash_file_state,
    normalise_sha256,
    quiet,
    reason,
    redact_url,
    remove_files,
    sha256_file,
)
from offline_bundle.storage.s3.settings import ca_bundle_file as combined

MiB = 1 << 20
PROGRESS_SECONDS = 5.0
PROGRESS_BYTES = 64 * MiB
MAX_BACKOFF = 30.0
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read (between bytes)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)\Z")


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


def ca_file(extra: str) -> str:
    """``ca_bundle`` as requests wants it: PEM text or a PEM file, added to (never replacing) the default CAs."""
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
        log: Log = quiet,
        retries: int = 5,
        ca_bundle: str | None = None,
        allow_http: bool = False,
        backoff: float = 1.0,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.session = session or requests.Session()
        self.log = log
        self.retries = max(0, retries)
        self.verify: str | None = ca_file(ca_bundle) if ca_bundle else None
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
        state = self._resume(url, partial, meta_path)
        self._attempts(url, partial, meta_path, state, headers)
        actual = state.hasher.hexdigest()
        if expected and actual != expected:
            remove_files(partial, meta_path)
            raise RemoteError(f"{shown}: SHA-256 mismatch: expected {expected}, got {actual}; the download was removed")
        os.replace(partial, dest)
        remove_files(meta_path)
        self.log(f"{dest.name}: {human(state.offset)}, sha256 {actual}")
        return Downloaded(dest, actual, state.offset)

    def _resume(self, url: str, partial: Path, meta_path: Path) -> _State:
        """The state of a partial file an earlier attempt left for the same URL, or a fresh start."""
        state = _State()
        validators = _load_validators(meta_path, url, partial)
        if validators is not None:
            state.hasher, state.offset = hash_file_state(partial)
            state.validators = validators
            if state.offset:
                self.log(f"{redact_url(url)}: resuming at {human(state.offset)}")
        else:
            remove_files(partial, meta_path)
        return state

    def _attempts(
        self, url: str, partial: Path, meta_path: Path, state: _State, headers: Mapping[str, str] | None
    ) -> None:
        """Attempts until the file is whole, with backoff; gives up after ``retries`` in a row without progress."""
        shown = redact_url(url)
        failures = 0
        while True:
            before = state.offset
            try:
                self._attempt(url, partial, meta_path, state, headers)
                return
            except _Retry as e:
                if state.offset > before:
                    failures = 0  # progress was made: only attempts in a row that made none count
                failures += 1
                if failures > self.retries:
                    kept = "nothing kept"
                    if state.offset and state.validators:
                        kept = f"{human(state.offset)} kept in {partial.name} to resume"
                    else:  # without an ETag or a date, a later run could not tell whether it is the same file
                        remove_files(partial, meta_path)
                    raise RemoteError(f"{shown}: {e} (gave up after {failures} attempts in a row; {kept})") from None
                delay = backoff_delay(failures - 1, self.backoff, e.retry_after)
                self.log(f"{shown}: {e}; retrying in {delay:.1f} s")
                time.sleep(delay)

    def _attempt(
        self, url: str, partial: Path, meta_path: Path, state: _State, headers: Mapping[str, str] | None
    ) -> None:
        """One GET that leaves ``state`` equal to what is on disk; returns when the file is whole.

        Raises _Retry for what another attempt may cure, RemoteError for what it cannot.
        """
        shown = redact_url(url)
        with self._get(url, state, headers) as resp:
            if resp.history:
                check_scheme(resp.url, allow_http=self.allow_http)
            if self._already_whole(resp, shown, partial, meta_path, state):
                return
            mode, total = self._open_mode(resp, url, partial, meta_path, state)
            self._receive(resp, partial, mode, state, _Progress(self.log, shown, total, state.offset))
            if total is not None and state.offset < total:
                raise _Retry(f"the body ended at {human(state.offset)} of {human(total)}")
            if total is not None and state.offset > total:
                state.restart(partial, meta_path)
                raise RemoteError(f"{shown}: the server sent more bytes than the {total} it announced")

    def _get(self, url: str, state: _State, headers: Mapping[str, str] | None) -> requests.Response:
        """The GET of what ``state`` lacks: a ``Range`` from its end, ``If-Range`` with its validator."""
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
            return self.session.get(url, **kwargs)
        except requests.exceptions.SSLError as e:
            raise RemoteError(f"{shown}: TLS failed: {reason(e)}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise _Retry(f"connection failed: {reason(e)}") from None
        except requests.exceptions.RequestException as e:
            raise RemoteError(f"{shown}: {e.__class__.__name__}: {reason(e)}") from None

    def _already_whole(
        self, resp: requests.Response, shown: str, partial: Path, meta_path: Path, state: _State
    ) -> bool:
        """True when a 416 says the partial file is the whole resource; raises for statuses without a body."""
        status = resp.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", resp.headers.get("Retry-After"))
        if status == 416 and state.offset:
            whole = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", "").strip())
            if whole and int(whole.group(1)) == state.offset:
                return True  # the partial file was already whole
            self.log(f"{shown}: the server refused to resume at {human(state.offset)}; starting again")
            state.restart(partial, meta_path)
            raise _Retry("range not satisfiable", "0")
        if status not in (200, 206):
            raise RemoteError(f"{shown}: HTTP {status} {resp.reason or ''}".rstrip())
        return False

    def _open_mode(
        self, resp: requests.Response, url: str, partial: Path, meta_path: Path, state: _State
    ) -> tuple[str, int | None]:
        """(file mode, total size if known): append the rest after a 206, start again after a 200."""
        shown = redact_url(url)
        if resp.status_code == 206:
            cr = parse_content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != state.offset:
                self.log(f"{shown}: the server answered another range than asked; starting again")
                state.restart(partial, meta_path)
                raise _Retry("unexpected Content-Range", "0")
            return "ab", cr[2]
        if state.offset:
            self.log(f"{shown}: the server sent the whole file instead of the rest; starting again")
        state.restart(partial, meta_path)
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        state.validators = _validators(resp)
        meta_path.write_text(json.dumps({"url": url, **state.validators}))
        return "wb", total

    @staticmethod
    def _receive(resp: requests.Response, partial: Path, mode: str, state: _State, progress: _Progress) -> None:
        """The body into ``partial``, hashed and counted in ``state`` chunk by chunk."""
        # The bytes as sent (never decoded from a Content-Encoding): what curl saves and what a lock pins.
        stream = resp.raw.stream(CHUNK, decode_content=False)
        with open(partial, mode) as f:
            while True:
                try:
                    chunk = next(stream, None)
                except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as e:
                    raise _Retry(f"connection lost at {human(state.offset)}: {reason(e)}") from None
                if chunk is None:
                    break
                try:
                    f.write(chunk)
                except OSError as e:
                    raise RemoteError(f"{partial}: cannot write: {e.strerror or e}") from None
                state.hasher.update(chunk)
                state.offset += len(chunk)
                progress.update(state.offset)


@dataclass
class _State:
    """What is in the ``.partial`` file: its length, the SHA-256 of those bytes, the resource's validators."""

    offset: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    validators: dict[str, str] = field(default_factory=dict)

    def restart(self, partial: Path, meta_path: Path) -> None:
        remove_files(partial, meta_path)
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
