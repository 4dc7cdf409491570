"""The blobstore behind a small interface: an S3-compatible bucket, or a local folder in the same layout.

Keeping the data path unaware of where bytes live lets ``pack``/``unpack`` work on removable media
with the very code Concourse runs against S3, and lets unit tests use a folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from offline_bundle.core import safe_fs
from offline_bundle.errors import (
    AccessDeniedError,
    ConfigError,
    NoSuchBucketError,
    StoreError,
    StoreTLSError,
    StoreUnreachableError,
    VerificationError,
)

T = TypeVar("T")
MiB = 1 << 20
MIN_PART = 8 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
PART_HEADROOM = 9_000  # leave room under S3's 10,000-part limit for estimates that run short
DEFAULT_MEMORY_BUDGET = 64 * MiB
MAX_CONCURRENCY = 4
COMMIT_MAX_BYTES = 64 * MiB
RETRIES_VARIABLE = "OFFLINE_BUNDLE_S3_RETRIES"
# Attempts per request. A store that cannot be reached is retried after 1, 2, 4 and 8 s (then
# every 8 s): 5 attempts give up after about 15 s, long enough for a store's restart, short
# enough that a wrong endpoint is reported before anyone wonders whether the step hangs.
DEFAULT_ATTEMPTS = 5
MAX_RETRY_DELAY = 8
CONNECT_TIMEOUT = 5  # seconds per connection attempt: a store on the network answers in milliseconds


def max_attempts() -> int:
    """Attempts per S3 request; an operational knob in the environment, not a source key."""
    raw = os.environ.get(RETRIES_VARIABLE, "")
    if not raw:
        return DEFAULT_ATTEMPTS
    if not raw.isdigit() or int(raw) < 1:
        raise StoreError(f"{RETRIES_VARIABLE} must be a whole number of attempts, at least 1")
    return int(raw)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    # User metadata; only ``head`` of an S3 store fills it (a listing does not carry it).
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)


def choose_part_size(estimated_bytes: int) -> int:
    """Smallest whole-MiB part size that keeps ``estimated_bytes`` under ~9,000 parts (S3 allows 10,000)."""
    need = -(-max(estimated_bytes, 1) // PART_HEADROOM)
    size = max(MIN_PART, -(-need // MiB) * MiB)
    return min(size, MAX_PART)


def choose_concurrency(part_size: int, budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Parts in flight that fit the memory budget.

    Besides the parts in flight, one part is being filled and one may wait for a free slot, so the
    payload buffers take at most ``(concurrency + 2) * part_size``; at least one part is in flight.
    """
    return max(1, min(MAX_CONCURRENCY, budget // part_size - 2))


@dataclass(frozen=True)
class Upload:
    """An incomplete multipart upload (a leftover of a put that died)."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True)
class Written:
    key: str
    size: int
    sha256: str


class Store(ABC):
    """What the data path needs from a blobstore."""

    description: str
    memory_budget: int = DEFAULT_MEMORY_BUDGET  # payload buffers of all writers in flight together

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None: ...

    @abstractmethod
    def get_bytes(self, key: str, limit: int = COMMIT_MAX_BYTES) -> bytes | None: ...

    @abstractmethod
    def put_bytes(
        self, key: str, data: bytes, *, only_if_absent: bool = False, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Write a small object; ``metadata`` is kept where the store can keep it (S3 user metadata)."""

    @abstractmethod
    def open_read(self, key: str, size: int, on_bytes: Callable[[int], None] | None = None) -> io.RawIOBase: ...

    @abstractmethod
    def writer(
        self,
        key: str,
        estimated_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
        *,
        memory_budget: int | None = None,
    ) -> BlobWriter:
        """A writer whose bytes appear at ``key`` only once it is closed; abort leaves nothing there.

        ``memory_budget``: this writer's share of the store's, when several write at once.
        """

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def list_uploads(self, prefix: str) -> list[Upload]:
        """Incomplete multipart uploads under ``prefix`` (none for stores without them)."""
        return []

    def abort_upload(self, key: str, upload_id: str) -> None:  # noqa: B027 - optional for stores without uploads
        """Abort one incomplete upload."""

    def open_range(
        self, key: str, size: int, start: int, end: int, on_bytes: Callable[[int], None] | None = None
    ) -> io.RawIOBase:
        """Bytes ``[start, end)`` of an object of ``size`` bytes: export writes media pieces from ranges."""
        raise StoreError(f"{self.description} cannot read byte ranges")


class BlobWriter(ABC):
    """Takes a stream of bytes, hashes it once (the SHA-256 goes into the manifest), stores it at its key."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def close(self) -> Written: ...

    @abstractmethod
    def abort(self) -> None: ...


# ------------------------------------------------------------------------------------------- folder


class DirStore(Store):
    """A local folder holding objects as files at their keys (removable media, tests).

    Whoever handed the folder over may have planted links in it: every file below the root is
    opened through ``safe_fs`` (no link followed on any component, regular files only), listings
    never enter a linked folder, and writes never go through a link.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.description = f"folder {self.root}"
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise ConfigError(f"the folder path {self.root[:60]}… is longer than the file system allows") from None
            raise
        safe_fs.check_root(self.root)

    def _path(self, key: str) -> str:
        """Where ``key`` is, for messages; every access goes through ``safe_fs`` with the key itself."""
        if key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"unsafe key {key!r}")
        return os.path.join(self.root, key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Files, and links and other nodes that are not folders (reading them is refused), under ``prefix``."""
        base = prefix.rpartition("/")[0] if "/" in prefix else ""
        if base:
            self._path(base)
        for entry in safe_fs.walk_below(self.root, base):
            name = entry.relpath.rpartition("/")[2]
            if entry.relpath.startswith(prefix) and not name.startswith(".tmp-"):
                yield ObjectInfo(entry.relpath, entry.stat.st_size, datetime.fromtimestamp(entry.stat.st_mtime, UTC))

    def head(self, key: str) -> ObjectInfo | None:
        self._path(key)
        st = safe_fs.lstat_below(self.root, key)
        if st is None:
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def get_bytes(self, key: str, limit: int = COMMIT_MAX_BYTES) -> bytes | None:
        self._path(key)
        try:
            f = safe_fs.open_file_below(self.root, key)
        except FileNotFoundError:
            return None
        with f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StoreError(f"{key} is larger than {limit} bytes")
        return data

    def put_bytes(
        self, key: str, data: bytes, *, only_if_absent: bool = False, metadata: Mapping[str, str] | None = None
    ) -> None:
        del metadata  # a folder keeps no user metadata
        self._path(key)
        try:
            safe_fs.write_below(self.root, key, data, exclusive=only_if_absent)  # "create if absent": a hard link
        except FileExistsError:
            raise StoreError(f"{key} already exists") from None
        except safe_fs.UnsafePathError as e:  # a link planted on the way: the folder refuses the write
            raise StoreError(str(e)) from None

    def open_read(self, key: str, size: int, on_bytes: Callable[[int], None] | None = None) -> io.RawIOBase:
        self._path(key)
        try:
            fd = safe_fs.open_below(self.root, key)
        except FileNotFoundError:
            raise StoreError(f"{key} is missing from {self.description}") from None
        f = os.fdopen(fd, "rb", buffering=0)
        actual = os.fstat(f.fileno()).st_size
        if actual != size:
            f.close()
            raise VerificationError(
                f"{key} is {actual} bytes where the signed manifest says {size}: the payload was altered or replaced"
            )
        return _CountingReader(f, on_bytes)

    def open_range(
        self, key: str, size: int, start: int, end: int, on_bytes: Callable[[int], None] | None = None
    ) -> io.RawIOBase:
        f = self.open_read(key, size)
        f._raw.seek(start)  # type: ignore[attr-defined]
        return _CountingReader(_Bounded(f, end - start), on_bytes)

    def writer(
        self,
        key: str,
        estimated_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
        *,
        memory_budget: int | None = None,
    ) -> BlobWriter:
        return _DirWriter(self, key, on_bytes)  # a file takes what it is given: no buffers to bound

    def delete(self, key: str) -> None:
        self._path(key)
        parts = safe_fs.split_below(key)
        try:
            with safe_fs.folder_below(self.root, "/".join(parts[:-1])) as folder:
                os.unlink(parts[-1], dir_fd=folder)  # a link is removed, never what it points to
        except FileNotFoundError:
            pass


class _CountingReader(io.RawIOBase):
    def __init__(self, raw: io.RawIOBase, on_bytes: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data and self._on_bytes:
            self._on_bytes(len(data))
        return data or b""

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Bounded(io.RawIOBase):
    """At most ``remaining`` bytes of ``raw``."""

    def __init__(self, raw: io.RawIOBase, remaining: int) -> None:
        self._raw = raw
        self._remaining = remaining

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        data = self._raw.read(size) if size else b""
        self._remaining -= len(data or b"")
        return data or b""

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DirWriter(BlobWriter):
    """Writes under a temporary name in the key's folder, renamed to the key once synced."""

    def __init__(self, store: DirStore, key: str, on_bytes: Callable[[int], None] | None) -> None:
        super().__init__()
        store._path(key)
        self._key = key
        # Written under a temporary name in the key's folder (held open), renamed to the key at close.
        self._new = safe_fs.NewFile(store.root, key)
        self._f = self._new.file
        self._on_bytes = on_bytes

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._f.write(chunk)
        self.size += len(chunk)
        if self._on_bytes:
            self._on_bytes(len(chunk))

    def close(self) -> Written:
        self._new.commit()
        return Written(self._key, self.size, self._hash.hexdigest())

    def abort(self) -> None:
        self._new.discard()


# ---------------------------------------------------------------------------------------------- S3


OUTAGE_SECONDS_PER_ATTEMPT = 10


def _ride_out_outage(call: Callable[[], T]) -> T:
    """Repeat ``call`` while the store cannot be reached, for about 10 s per configured attempt.

    botocore's own retries share a quota between threads, which parallel part uploads can use up
    within seconds of a store restart; a part that waits here costs nothing but time, and the
    upload (with the parts already stored) goes on when the store is back.
    """
    import time

    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    deadline: float | None = None
    while True:
        try:
            return call()
        except (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError) as e:
            now = time.monotonic()
            if deadline is None:
                deadline = now + OUTAGE_SECONDS_PER_ATTEMPT * max_attempts()
                sys.stderr.write(
                    f"the store cannot be reached ({e.__class__.__name__}); retrying for up to "
                    f"{int(deadline - now)} s\n"
                )
            if now >= deadline:
                raise
            time.sleep(min(5.0, deadline - now))


class _Uploader:
    """Parallel multipart upload with a bounded number of parts in flight."""

    def __init__(self, client: object, bucket: str, key: str, concurrency: int) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.upload_id: str | None = None
        self.parts: list[dict[str, object]] = []
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
        self._slots = threading.Semaphore(concurrency)
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def start(self) -> None:
        resp = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)  # type: ignore[attr-defined]
        self.upload_id = resp["UploadId"]

    def submit(self, number: int, body: bytes, on_done: Callable[[int], None] | None) -> None:
        if self._error is not None:
            raise self._error
        self._slots.acquire()

        def run() -> None:
            try:
                resp = _ride_out_outage(
                    lambda: self.client.upload_part(  # type: ignore[attr-defined]
                        Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
                    )
                )
                with self._lock:
                    self.parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                if on_done:
                    on_done(len(body))
            except BaseException as e:  # noqa: BLE001 - re-raised on the producing thread
                self._error = e
            finally:
                self._slots.release()

        self._futures.append(self._pool.submit(run))

    def finish(self) -> None:
        for f in self._futures:
            f.result()
        self._pool.shutdown()
        if self._error is not None:
            raise self._error
        parts = sorted(self.parts, key=lambda p: p["PartNumber"])  # type: ignore[arg-type,return-value]
        self.client.complete_multipart_upload(  # type: ignore[attr-defined]
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id:
            # Best effort: prune and the bucket lifecycle rule remove what is left.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(  # type: ignore[attr-defined]
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )


def retry_delay(attempt: int) -> int:
    """Seconds to wait after failed attempt ``attempt`` (1-based): 1, 2, 4, 8, 8, ..."""
    return int(min(2 ** (attempt - 1), MAX_RETRY_DELAY))


def retry_budget(attempts: int | None = None) -> int:
    """Seconds spent waiting between ``attempts`` attempts of one request (15 s for the default 5)."""
    n = max_attempts() if attempts is None else attempts
    return sum(retry_delay(i) for i in range(1, n))


def _causes(e: BaseException) -> Iterator[BaseException]:
    """``e`` and what it wraps (botocore keeps urllib3's error in ``kwargs['error']``)."""
    seen: set[int] = set()
    todo = [e]
    while todo:
        x = todo.pop(0)
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        wrapped = getattr(x, "kwargs", {}).get("error") if isinstance(getattr(x, "kwargs", None), dict) else None
        todo += [c for c in (wrapped, x.__cause__, x.__context__, *x.args) if isinstance(c, BaseException)]


def _endpoint_of(e: BaseException, fallback: str | None) -> str:
    """The scheme, host and port the failed request went to, without its path and query."""
    from urllib.parse import urlsplit

    url = getattr(e, "kwargs", {}).get("endpoint_url") if isinstance(getattr(e, "kwargs", None), dict) else None
    if url:
        parts = urlsplit(str(url))
        return f"{parts.scheme}://{parts.netloc}/"
    return fallback or "the endpoint"


def _unreachable_reason(e: BaseException) -> str:
    import socket

    for c in _causes(e):
        if isinstance(c, socket.gaierror):
            return "its host name does not resolve"
        if isinstance(c, OSError) and c.strerror and not isinstance(c, TimeoutError):
            return c.strerror.lower()
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    if isinstance(e, ConnectTimeoutError):
        return f"no answer within {CONNECT_TIMEOUT} s"
    if isinstance(e, ReadTimeoutError):
        return "it stopped answering"
    return e.__class__.__name__


def _tls_problem(e: BaseException) -> str:
    """What went wrong in a TLS handshake, from the ssl module's own error (its reason code)."""
    import ssl

    for c in _causes(e):
        if isinstance(c, ssl.SSLCertVerificationError):
            return "certificate"
        if isinstance(c, ssl.SSLError) and c.reason == "WRONG_VERSION_NUMBER":
            return "plain-http"
    text = str(e)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate"
    if "WRONG_VERSION_NUMBER" in text:
        return "plain-http"
    return "other"


def _is_unreachable(e: BaseException) -> bool:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
        SSLError,
    )

    if isinstance(e, SSLError):
        return False
    return isinstance(e, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError))


# S3 answers worth another attempt: the store is busy, restarting or briefly failing.
_RETRY_STATUSES = {429, 500, 502, 503, 504}
_RETRY_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}


def _retry_handler(attempts_allowed: int) -> Callable[..., float | bool | None]:
    """botocore's ``needs-retry`` hook: our retries, each reported on stderr as it happens.

    botocore's own retries stay silent and share a quota across threads; here a refused connection
    says so at once and gives up after ``retry_budget()`` seconds. A TLS failure is never retried:
    it is a setting, not an outage.
    """

    def needs_retry(
        *, attempts: int, caught_exception: BaseException | None = None, response: Any = None, **kw: Any
    ) -> float | bool | None:
        from botocore.exceptions import SSLError

        endpoint = getattr(kw.get("endpoint"), "host", None)
        if caught_exception is not None:
            if isinstance(caught_exception, SSLError):
                return False
            if not _is_unreachable(caught_exception):
                return None
            reason = _unreachable_reason(caught_exception)
            why = f"cannot connect to {_endpoint_of(caught_exception, endpoint)} ({reason})"
        elif response is not None:
            http, parsed = response
            code = (parsed or {}).get("Error", {}).get("Code", "")
            if http.status_code not in _RETRY_STATUSES and code not in _RETRY_CODES:
                return None
            why = f"the store at {endpoint} answered {code or 'HTTP'} (HTTP {http.status_code})"
        else:
            return None
        if attempts >= attempts_allowed:
            return False
        delay = retry_delay(attempts)
        sys.stderr.write(f"retrying in {delay} s (attempt {attempts + 1} of {attempts_allowed}): {why}\n")
        sys.stderr.flush()
        return delay

    return needs_retry


def _s3_error(e: BaseException, what: str, where: str | None = None) -> StoreError:
    """One line naming the operation, what S3 or the network said, and the fix; never the credentials.

    ``where`` (``s3://bucket at endpoint``) is named when the caller knows it.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, SSLError

    at = f" ({where})" if where and where not in what else ""
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = err.get("Code", "?")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        said = f"S3 answered {code} (HTTP {status})"
        if code == "NoSuchBucket":
            bucket = err.get("BucketName") or (where or "").removeprefix("s3://").split(" ", 1)[0] or "?"
            return NoSuchBucketError(
                f"{what}{at}: {said}: bucket {bucket} does not exist at this endpoint; check bucket (and endpoint)"
            )
        if code in ("AccessDenied", "Forbidden") or status == 403:
            return AccessDeniedError(
                f"{what}{at}: {said}: the credentials may not {e.operation_name}; "
                "give ones that may (or check access_key_id and secret_access_key)"
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return AccessDeniedError(f"{what}{at}: {said}: check access_key_id and secret_access_key")
        return StoreError(f"{what}{at}: {said}")
    if isinstance(e, SSLError):
        endpoint = _endpoint_of(e, None)
        problem = _tls_problem(e)
        if problem == "plain-http":
            hint = f"the store at {endpoint} speaks plain HTTP: use an http:// endpoint or disable_ssl: true"
        elif problem == "certificate":
            hint = (
                f"certificate verify failed: the certificate of {endpoint} is not signed by a trusted CA; "
                "add the store's CA to ca_bundle (or skip_ssl_verification: true)"
            )
        else:
            hint = f"TLS with {endpoint} failed ({e}); check endpoint, ca_bundle and disable_ssl"
        return StoreTLSError(f"{what}{at}: {hint}")
    if isinstance(e, BotoCoreError) and _is_unreachable(e):
        endpoint = _endpoint_of(e, None)
        return StoreUnreachableError(
            f"{what}{at}: cannot connect to {endpoint} ({_unreachable_reason(e)}) after {max_attempts()} attempts "
            f"over {retry_budget()} s; is the store running at {endpoint}? check endpoint"
        )
    if isinstance(e, NoCredentialsError):
        return StoreError(f"{what}{at}: no credentials: set access_key_id and secret_access_key (or AWS_* variables)")
    return StoreError(f"{what}{at}: {e.__class__.__name__}: {e}")


_CA_FILES: list[str] = []


def _ca_file(extra_pem: str) -> str:
    """The default CA store plus the source's ``ca_bundle``: private CAs add to, not replace, trust."""
    import atexit
    import tempfile

    import certifi

    with open(certifi.where()) as f:
        default = f.read()
    fd, path = tempfile.mkstemp(prefix="ob-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as f:
        f.write(default + "\n" + extra_pem.strip() + "\n")
    if not _CA_FILES:
        atexit.register(lambda: [os.unlink(p) for p in _CA_FILES if os.path.exists(p)])
    _CA_FILES.append(path)
    return path


def make_s3_client(source: object) -> object:
    """A boto3 client for ``source`` (a config.Source): retries, path style, TLS options.

    Request checksums are sent only when an operation requires them: several S3-compatible
    stores reject the CRC headers recent boto3 adds by default (docs/format.md).
    """
    import boto3
    from botocore.config import Config

    s = source
    endpoint = s.endpoint  # type: ignore[attr-defined]
    if endpoint and "://" not in endpoint:
        endpoint = ("http://" if s.disable_ssl else "https://") + endpoint  # type: ignore[attr-defined]
    verify: bool | str | None = None
    if s.skip_ssl_verification:  # type: ignore[attr-defined]
        import sys
        import warnings

        import urllib3

        # One warning of ours instead of urllib3's on every request.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        sys.stderr.write("warning: skip_ssl_verification is set: the S3 endpoint's certificate is NOT checked\n")
        verify = False
    elif s.ca_bundle:  # type: ignore[attr-defined]
        verify = _ca_file(s.ca_bundle)  # type: ignore[attr-defined]
    config = Config(
        # No SHA-256 of every request body for SigV4: each payload's SHA-256 is already computed once and
        # sits in the signed manifest, which is what the far side checks; hashing it again costs CPU only.
        s3={"addressing_style": "path" if s.path_style else "auto", "payload_signing_enabled": False},  # type: ignore[attr-defined]
        # One attempt for botocore: _retry_handler decides, reports and bounds every retry.
        retries={"total_max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=120,
        max_pool_connections=MAX_CONCURRENCY * 2 + 2,
        tcp_keepalive=True,
    )
    session = boto3.session.Session(
        aws_access_key_id=s.access_key_id,  # type: ignore[attr-defined]
        aws_secret_access_key=s.secret_access_key,  # type: ignore[attr-defined]
        aws_session_token=s.session_token,  # type: ignore[attr-defined]
        region_name=s.region_name,  # type: ignore[attr-defined]
    )
    client = session.client("s3", endpoint_url=endpoint, use_ssl=not s.disable_ssl, verify=verify, config=config)  # type: ignore[attr-defined]
    client.meta.events.register_first("needs-retry.s3", _retry_handler(max_attempts()))
    return client


class S3Store(Store):
    def __init__(self, source: object, *, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        self.client = make_s3_client(source)
        self.bucket: str = source.bucket  # type: ignore[attr-defined]
        self.memory_budget = memory_budget
        endpoint = source.endpoint or "AWS S3"  # type: ignore[attr-defined]
        self.description = f"s3://{self.bucket} at {endpoint}"

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)  # type: ignore[attr-defined]
            for page in pages:
                for o in page.get("Contents", []):
                    yield ObjectInfo(o["Key"], o["Size"], o["LastModified"])
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"listing {prefix}", self.description) from None

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)  # type: ignore[attr-defined]
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise _s3_error(e, f"reading {key}", self.description) from None
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"reading {key}", self.description) from None
        return ObjectInfo(key, r["ContentLength"], r["LastModified"], r.get("Metadata") or {})

    def get_bytes(self, key: str, limit: int = COMMIT_MAX_BYTES) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            r = self.client.get_object(Bucket=self.bucket, Key=key)  # type: ignore[attr-defined]
            if r["ContentLength"] > limit:
                raise StoreError(f"{key} is larger than {limit} bytes")
            return r["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _s3_error(e, f"reading {key}", self.description) from None
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"reading {key}", self.description) from None

    def put_bytes(
        self, key: str, data: bytes, *, only_if_absent: bool = False, metadata: Mapping[str, str] | None = None
    ) -> None:
        from botocore.exceptions import ClientError

        extra = {"Metadata": dict(metadata)} if metadata else {}
        try:
            if only_if_absent:
                try:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", **extra)  # type: ignore[attr-defined]
                    return
                except ClientError as e:
                    code = e.response.get("Error", {}).get("Code")
                    if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                        raise StoreError(f"{key} already exists") from None
                    if code not in ("NotImplemented", "InvalidArgument"):
                        raise
                if self.head(key) is not None:  # a store without conditional writes: best effort
                    raise StoreError(f"{key} already exists")
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)  # type: ignore[attr-defined]
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"writing {key}", self.description) from None

    def open_read(self, key: str, size: int, on_bytes: Callable[[int], None] | None = None) -> io.RawIOBase:
        return _ResumingReader(self, key, size, on_bytes)

    def open_range(
        self, key: str, size: int, start: int, end: int, on_bytes: Callable[[int], None] | None = None
    ) -> io.RawIOBase:
        return _ResumingReader(self, key, size, on_bytes, start=start, end=end)

    def writer(
        self,
        key: str,
        estimated_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
        *,
        memory_budget: int | None = None,
    ) -> BlobWriter:
        return _S3Writer(self, key, estimated_bytes, on_bytes, memory_budget or self.memory_budget)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"deleting {key}", self.description) from None

    def list_uploads(self, prefix: str) -> list[Upload]:
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(  # type: ignore[attr-defined]
                Bucket=self.bucket, Prefix=prefix
            )
            return [Upload(u["Key"], u["UploadId"], u["Initiated"]) for page in pages for u in page.get("Uploads", [])]
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"listing incomplete uploads under {prefix}", self.description) from None

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"aborting the upload of {key}", self.description) from None


class _ResumingReader(io.RawIOBase):
    """A GET body that resumes with a ranged GET from where it stopped, up to a few times.

    ``If-Match`` on the ETag makes sure a resumed read continues the same object. ``start``/``end``
    read only the bytes ``[start, end)`` of an object of ``size`` bytes.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        size: int,
        on_bytes: Callable[[int], None] | None,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._total = size
        self._size = size if end is None else end  # where reading stops
        self._offset = start
        self._ranged = bool(start) or self._size < size
        self._checked = False  # the object's size is checked on the first open
        self._etag: str | None = None
        self._body: object | None = None
        self._on_bytes = on_bytes
        # Resumes in a row that brought no byte, each after a longer back-off. A resume that delivers
        # data starts the count again: a long download over a flaky link may be cut many times, and
        # only a link that stays broken should end it.
        self._failures = 0
        self._retries = min(max_attempts(), 8)

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        kwargs: dict[str, object] = {"Bucket": self._store.bucket, "Key": self._key}
        if self._offset or self._ranged:
            kwargs["Range"] = f"bytes={self._offset}-" + (str(self._size - 1) if self._size < self._total else "")
        if self._etag:
            kwargs["IfMatch"] = self._etag
        try:
            r = _ride_out_outage(lambda: self._store.client.get_object(**kwargs))  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"downloading {self._key}", self._store.description) from None
        if not self._checked:
            actual = r["ContentLength"]
            if "Range" in kwargs:
                total = str(r.get("ContentRange", "")).rpartition("/")[2]
                if not total.isdigit():
                    r["Body"].close()
                    raise StoreError(f"downloading {self._key}: the store ignored the byte range asked for")
                actual = int(total)
            if actual != self._total:
                r["Body"].close()
                raise VerificationError(
                    f"{self._key} is {actual} bytes where the signed manifest says {self._total}: "
                    "the payload was altered or replaced"
                )
            self._checked = True
        self._etag = r.get("ETag")
        self._body = r["Body"]

    def read(self, size: int = -1) -> bytes:
        import time

        if size is None or size < 0:
            size = 1 << 62
        if self._offset >= self._size and self._size > 0 and self._body is None:
            return b""
        while True:
            try:
                if self._body is None:
                    self._open()
                data = self._body.read(min(size, MiB))  # type: ignore[attr-defined]
                break
            except (StoreError, VerificationError):
                raise
            except Exception as e:  # noqa: BLE001 - connection reset, timeout: resume
                self._failures += 1
                self._body = None
                if self._failures > self._retries:
                    where = self._store.description
                    raise _s3_error(e, f"downloading {self._key} at byte {self._offset}", where) from None
                pause = min(2 ** (self._failures - 1), 30)
                sys.stderr.write(
                    f"download of {self._key} interrupted at byte {self._offset} ({e.__class__.__name__}); "
                    f"resuming with a ranged GET in {pause} s\n"
                )
                time.sleep(pause)
        if data:
            self._offset += len(data)
            self._failures = 0
            if self._on_bytes:
                self._on_bytes(len(data))
        elif self._offset < self._size:
            self._body = None  # early end: resume from the offset
            self._failures += 1
            if self._failures > self._retries:
                raise StoreError(f"downloading {self._key}: the object ended at byte {self._offset} of {self._size}")
            return self.read(size)
        return data

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class _S3Writer(BlobWriter):
    """Buffers one part at a time, straight to the payload's key; a payload of one part is a single PUT.

    The key is chosen before the first byte, so there is no temporary name and no server-side copy:
    a multipart upload makes no object until it is completed, and an aborted one leaves nothing.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        estimated: int,
        on_bytes: Callable[[int], None] | None,
        memory_budget: int,
    ) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self.part_size = choose_part_size(estimated)
        self.concurrency = choose_concurrency(self.part_size, memory_budget)
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._number = 0
        self._up: _Uploader | None = None
        self._on_bytes = on_bytes

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        while chunk:
            # Split a chunk at the part boundary so that joining a part copies exactly one part.
            room = self.part_size - self._buffered
            head, chunk = (chunk, b"") if len(chunk) <= room else (chunk[:room], chunk[room:])
            self._chunks.append(head)
            self._buffered += len(head)
            if self._buffered == self.part_size:
                self._flush()

    def _flush(self) -> None:
        body = b"".join(self._chunks)
        self._chunks = []
        self._buffered = 0
        if self._up is None:
            self._up = _Uploader(self._store.client, self._store.bucket, self._key, self.concurrency)
            try:
                self._up.start()
            except Exception as e:  # noqa: BLE001
                raise _s3_error(e, f"starting the upload of {self._key}") from None
        self._number += 1
        if self._number > MAX_PARTS:
            raise StoreError("payload outgrew 10,000 parts: the size estimate was far too low")
        try:
            self._up.submit(self._number, body, self._on_bytes)
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"uploading {self._key}") from None

    def close(self) -> Written:
        digest = self._hash.hexdigest()
        if self._up is None:  # it all fit in one part: one PUT
            data = b"".join(self._chunks)
            self._chunks = []
            self._store.put_bytes(self._key, data)
            if self._on_bytes:
                self._on_bytes(len(data))
            return Written(self._key, self.size, digest)
        if self._buffered:
            self._flush()
        try:
            self._up.finish()
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"completing the upload of {self._key}") from None
        return Written(self._key, self.size, digest)

    def abort(self) -> None:
        self._chunks = []
        if self._up is not None:
            self._up.abort()
