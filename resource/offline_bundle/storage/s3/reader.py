"""A download that survives a cut link: the body resumes with a ranged GET from where it stopped."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from offline_bundle.core.streams import ReadStream
from offline_bundle.errors import StoreError, VerificationError
from offline_bundle.storage.base import MiB
from offline_bundle.storage.s3.client import max_attempts, ride_out_outage, s3_error

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef, GetObjectRequestTypeDef


class ResumingReader(ReadStream):
    """A GET body that resumes with a ranged GET from where it stopped, up to a few times.

    ``If-Match`` on the ETag makes sure a resumed read continues the same object. ``start``/``end``
    read only the bytes ``[start, end)`` of an object of ``size`` bytes. ``where`` names the store
    in messages.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        size: int,
        on_bytes: Callable[[int], None] | None,
        *,
        where: str,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._where = where
        self._key = key
        self._total = size
        self._size = size if end is None else end  # where reading stops
        self._offset = start
        self._ranged = bool(start) or self._size < size
        self._checked = False  # the object's size is checked on the first open
        self._etag: str | None = None
        self._body: StreamingBody | None = None
        self._on_bytes = on_bytes
        # Resumes in a row that brought no byte, each after a longer back-off. A resume that delivers
        # data starts the count again: a long download over a flaky link may be cut many times, and
        # only a link that stays broken should end it.
        self._failures = 0
        self._retries = min(max_attempts(), 8)

    def _request(self) -> GetObjectRequestTypeDef:
        request: GetObjectRequestTypeDef = {"Bucket": self._bucket, "Key": self._key}
        if self._offset or self._ranged:
            request["Range"] = f"bytes={self._offset}-" + (str(self._size - 1) if self._size < self._total else "")
        if self._etag:
            request["IfMatch"] = self._etag
        return request

    def _open(self) -> None:
        request = self._request()
        try:
            r = ride_out_outage(lambda: self._client.get_object(**request))
        except Exception as e:  # noqa: BLE001
            raise s3_error(e, f"downloading {self._key}", self._where) from None
        if not self._checked:
            self._check_size(r, ranged="Range" in request)
            self._checked = True
        self._etag = r.get("ETag")
        self._body = r["Body"]

    def _check_size(self, r: GetObjectOutputTypeDef, *, ranged: bool) -> None:
        """The object must be as large as the signed manifest says, whatever part of it is read."""
        actual = r["ContentLength"]
        if ranged:
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

    def _read_some(self, size: int) -> bytes:
        """Up to ``size`` bytes (at most 1 MiB); a cut connection is resumed after a back-off."""
        while True:
            try:
                if self._body is None:
                    self._open()
                assert self._body is not None
                return self._body.read(min(size, MiB))
            except (StoreError, VerificationError):
                raise
            except Exception as e:  # noqa: BLE001 - connection reset, timeout: resume
                self._failures += 1
                self._body = None
                if self._failures > self._retries:
                    raise s3_error(e, f"downloading {self._key} at byte {self._offset}", self._where) from None
                pause = min(2 ** (self._failures - 1), 30)
                sys.stderr.write(
                    f"download of {self._key} interrupted at byte {self._offset} ({e.__class__.__name__}); "
                    f"resuming with a ranged GET in {pause} s\n"
                )
                time.sleep(pause)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 62
        if self._offset >= self._size and self._size > 0 and self._body is None:
            return b""
        data = self._read_some(size)
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
