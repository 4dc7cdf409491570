"""The S3 client every request of the project goes through: its settings, its retries, its errors.

Retries are ours (reported on stderr as they happen, bounded by ``OFFLINE_BUNDLE_S3_RETRIES``) and
every botocore failure becomes one of the typed errors of ``errors.py`` with a line that says what
to fix, so no caller interprets botocore's exceptions itself.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import boto3
import urllib3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from offline_bundle.errors import (
    AccessDeniedError,
    NoSuchBucketError,
    StoreError,
    StoreTLSError,
    StoreUnreachableError,
)
from offline_bundle.storage.base import MAX_CONCURRENCY
from offline_bundle.storage.s3.settings import S3Settings, ca_bundle_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

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


OUTAGE_SECONDS_PER_ATTEMPT = 10


def ride_out_outage(call: Callable[[], T]) -> T:
    """Repeat ``call`` while the store cannot be reached, for about 10 s per configured attempt.

    botocore's own retries share a quota between threads, which parallel part uploads can use up
    within seconds of a store restart; a part that waits here costs nothing but time, and the
    upload (with the parts already stored) goes on when the store is back.
    """

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

    url = getattr(e, "kwargs", {}).get("endpoint_url") if isinstance(getattr(e, "kwargs", None), dict) else None
    if url:
        parts = urlsplit(str(url))
        return f"{parts.scheme}://{parts.netloc}/"
    return fallback or "the endpoint"


def _unreachable_reason(e: BaseException) -> str:

    for c in _causes(e):
        if isinstance(c, socket.gaierror):
            return "its host name does not resolve"
        if isinstance(c, OSError) and c.strerror and not isinstance(c, TimeoutError):
            return c.strerror.lower()

    if isinstance(e, ConnectTimeoutError):
        return f"no answer within {CONNECT_TIMEOUT} s"
    if isinstance(e, ReadTimeoutError):
        return "it stopped answering"
    return e.__class__.__name__


def _tls_problem(e: BaseException) -> str:
    """What went wrong in a TLS handshake, from the ssl module's own error (its reason code)."""

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


def retry_handler(attempts_allowed: int) -> Callable[..., float | bool | None]:
    """botocore's ``needs-retry`` hook: our retries, each reported on stderr as it happens.

    botocore's own retries stay silent and share a quota across threads; here a refused connection
    says so at once and gives up after ``retry_budget()`` seconds. A TLS failure is never retried:
    it is a setting, not an outage.
    """

    def needs_retry(
        *, attempts: int, caught_exception: BaseException | None = None, response: Any = None, **kw: Any
    ) -> float | bool | None:

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


def s3_error(e: BaseException, what: str, where: str | None = None) -> StoreError:
    """One line naming the operation, what S3 or the network said, and the fix; never the credentials.

    ``where`` (``s3://bucket at endpoint``) is named when the caller knows it.
    """

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


def make_s3_client(settings: S3Settings) -> S3Client:
    """A boto3 client for ``settings``: our retries, path style, TLS options.

    Request checksums are sent only when an operation requires them: several S3-compatible
    stores reject the CRC headers recent boto3 adds by default (docs/format.md).
    """

    config = Config(
        # No SHA-256 of every request body for SigV4: each payload's SHA-256 is already computed once and
        # sits in the signed manifest, which is what the far side checks; hashing it again costs CPU only.
        s3={"addressing_style": "path" if settings.path_style else "auto", "payload_signing_enabled": False},
        # One attempt for botocore: retry_handler decides, reports and bounds every retry.
        retries={"total_max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=120,
        max_pool_connections=MAX_CONCURRENCY * 2 + 2,
        tcp_keepalive=True,
    )
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        region_name=settings.region_name,
    )
    client = session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        use_ssl=not settings.disable_ssl,
        verify=_verify(settings),
        config=config,
    )
    # botocore-stubs type every handler as returning None; a needs-retry handler returns the delay.
    client.meta.events.register_first("needs-retry.s3", retry_handler(max_attempts()))  # type: ignore[arg-type]
    return client


def _verify(settings: S3Settings) -> bool | str | None:
    """botocore's ``verify``: False to skip the check, a CA file, or None for the default CAs."""
    if settings.skip_ssl_verification:
        # One warning of ours instead of urllib3's on every request.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        sys.stderr.write("warning: skip_ssl_verification is set: the S3 endpoint's certificate is NOT checked\n")
        return False
    if settings.ca_bundle:
        return ca_bundle_file(settings.ca_bundle)
    return None
