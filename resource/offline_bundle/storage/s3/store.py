"""The S3 store: a bucket of an S3-compatible store behind the ``Store`` interface."""

from __future__ import annotations

import builtins
import io
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from offline_bundle.core.config import Source
from offline_bundle.errors import AlreadyExistsError, StoreError
from offline_bundle.storage.base import (
    COMMIT_MAX_BYTES,
    DEFAULT_MEMORY_BUDGET,
    BlobWriter,
    ObjectInfo,
    Store,
    Upload,
    Written,
    choose_concurrency,
    choose_part_size,
)
from offline_bundle.storage.s3.client import make_s3_client, s3_error
from offline_bundle.storage.s3.multipart import MultipartWriter
from offline_bundle.storage.s3.reader import ResumingReader
from offline_bundle.storage.s3.settings import S3Settings

if TYPE_CHECKING:
    from typing import Self

    from mypy_boto3_s3 import S3Client

# What S3-compatible stores answer to a conditional PUT (If-None-Match: *) on an existing key, and
# what those without conditional writes answer to the header.
_EXISTS_CODES = ("PreconditionFailed", "ConditionalRequestConflict")
_NO_CONDITIONAL_CODES = ("NotImplemented", "InvalidArgument")


def _code(e: Exception) -> str:

    return str(e.response.get("Error", {}).get("Code", "")) if isinstance(e, ClientError) else ""


def _status(e: Exception) -> int | None:

    return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(e, ClientError) else None


class S3Store(Store):
    """``client``: one made elsewhere (a test's fake); by default one is built from ``settings``."""

    def __init__(
        self, settings: S3Settings, *, client: S3Client | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET
    ) -> None:
        self.settings = settings
        self.client: S3Client = client if client is not None else make_s3_client(settings)
        self.bucket = settings.bucket
        self.memory_budget = memory_budget
        self.description = settings.description

    @classmethod
    def from_source(cls, source: Source, *, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Self:
        """The store of a resource's source (or a publish target): its S3 keys, nothing else."""
        return cls(S3Settings.from_source(source), memory_budget=memory_budget)

    def _error(self, e: BaseException, what: str) -> StoreError:
        return s3_error(e, what, self.description)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for o in page.get("Contents", []):
                    yield ObjectInfo(o["Key"], o["Size"], o["LastModified"])
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"listing {prefix}") from None

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as e:  # noqa: BLE001
            if _status(e) == 404:
                return None
            raise self._error(e, f"reading {key}") from None
        return ObjectInfo(key, r["ContentLength"], r["LastModified"], r.get("Metadata") or {})

    def get_bytes(self, key: str, limit: int = COMMIT_MAX_BYTES) -> bytes | None:
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=key)
            if r["ContentLength"] > limit:
                raise StoreError(f"{key} is larger than {limit} bytes")
            return r["Body"].read()
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("NoSuchKey", "404"):
                return None
            raise self._error(e, f"reading {key}") from None

    def put_bytes(
        self, key: str, data: bytes, *, only_if_absent: bool = False, metadata: Mapping[str, str] | None = None
    ) -> None:
        try:
            if only_if_absent:
                self._put_if_absent(key, data, dict(metadata or {}))
            else:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=dict(metadata or {}))
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"writing {key}") from None

    def _put_if_absent(self, key: str, data: bytes, metadata: dict[str, str]) -> None:
        """A conditional PUT; a store without conditional writes gets a HEAD first (best effort)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", Metadata=metadata)
            return
        except Exception as e:  # noqa: BLE001
            if _code(e) in _EXISTS_CODES:
                raise AlreadyExistsError(f"{key} already exists") from None
            if _code(e) not in _NO_CONDITIONAL_CODES:
                raise
        if self.head(key) is not None:
            raise AlreadyExistsError(f"{key} already exists")
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata)

    def open_read(self, key: str, size: int, on_bytes: Callable[[int], None] | None = None) -> io.RawIOBase:
        return ResumingReader(self.client, self.bucket, key, size, on_bytes, where=self.description)

    def open_range(
        self, key: str, size: int, start: int, end: int, on_bytes: Callable[[int], None] | None = None
    ) -> io.RawIOBase:
        return ResumingReader(
            self.client, self.bucket, key, size, on_bytes, where=self.description, start=start, end=end
        )

    def writer(
        self,
        key: str,
        estimated_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
        *,
        memory_budget: int | None = None,
    ) -> BlobWriter:
        return _PayloadWriter(self, key, estimated_bytes, on_bytes, memory_budget or self.memory_budget)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"deleting {key}") from None

    def list_uploads(self, prefix: str) -> builtins.list[Upload]:  # ``list`` is a method here
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
            return [
                Upload(u.get("Key", ""), u.get("UploadId", ""), u["Initiated"])
                for page in pages
                for u in page.get("Uploads", [])
            ]
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"listing incomplete uploads under {prefix}") from None

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"aborting the upload of {key}") from None


class _PayloadWriter(BlobWriter):
    """A payload streamed to its final key (``MultipartWriter``), hashed once on the way."""

    def __init__(
        self, store: S3Store, key: str, estimated: int, on_bytes: Callable[[int], None] | None, memory_budget: int
    ) -> None:
        super().__init__()
        self._key = key
        part_size = choose_part_size(estimated)
        self._upload = MultipartWriter(
            store.client,
            store.bucket,
            key,
            part_size=part_size,
            concurrency=choose_concurrency(part_size, memory_budget),
            on_bytes=on_bytes,
            where=store.description,
        )

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        self._upload.write(chunk)

    def close(self) -> Written:
        digest = self._hash.hexdigest()
        self._upload.finish()
        return Written(self._key, self.size, digest)

    def abort(self) -> None:
        self._upload.abort()
