"""One in-memory S3 client for every unit test that needs one: ``S3Store(settings, client=FakeS3())``.

It answers the calls the project makes, as S3 answers them (ClientErrors with S3's codes and HTTP
statuses, paged listings, ranged GETs with Content-Range, multipart uploads whose parts are checked
at completion), and lets a test break it on purpose: ``fail`` raises a given error on the Nth call of
an operation, ``cut_bodies`` makes GET bodies end in a reset connection after N bytes. Integration
tests use a real SeaweedFS, never this.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

OPERATION_NAMES = {
    "list_objects_v2": "ListObjectsV2",
    "head_object": "HeadObject",
    "get_object": "GetObject",
    "put_object": "PutObject",
    "delete_object": "DeleteObject",
    "create_multipart_upload": "CreateMultipartUpload",
    "upload_part": "UploadPart",
    "complete_multipart_upload": "CompleteMultipartUpload",
    "abort_multipart_upload": "AbortMultipartUpload",
    "list_multipart_uploads": "ListMultipartUploads",
    "list_parts": "ListParts",
}


def client_error(code: str, status: int, operation: str = "GetObject", **error: str) -> ClientError:
    """A ClientError as botocore raises it for an S3 error answer."""
    return ClientError(
        {"Error": {"Code": code, "Message": code, **error}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


@dataclass
class StoredObject:
    data: bytes
    etag: str
    metadata: dict[str, str]
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class OpenUpload:
    upload_id: str
    bucket: str
    key: str
    metadata: dict[str, str]
    initiated: datetime = field(default_factory=lambda: datetime.now(UTC))
    parts: dict[int, bytes] = field(default_factory=dict)


class CutBody(io.RawIOBase):
    """A GET body; with ``allow`` set, it delivers that many bytes and then fails as a reset connection does."""

    def __init__(self, data: bytes, allow: int | None) -> None:
        self._data, self._allow = data, allow

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if not self._data:
            return b""
        if self._allow is not None and self._allow <= 0:
            raise ConnectionResetError("connection reset by peer")
        n = len(self._data) if size is None or size < 0 else size
        if self._allow is not None:
            n = min(n, self._allow)
            self._allow -= min(n, len(self._data))
        out, self._data = self._data[:n], self._data[n:]
        return out


class FakeS3:
    """In-memory buckets (``buckets`` exist from the start; others answer NoSuchBucket)."""

    def __init__(self, buckets: tuple[str, ...] = ("b",), *, page_size: int = 1000) -> None:
        self.buckets: dict[str, dict[str, StoredObject]] = {name: {} for name in buckets}
        self.uploads: dict[str, OpenUpload] = {}  # open multipart uploads by id
        self.page_size = page_size
        self.requests: list[tuple[str, dict[str, Any]]] = []  # every call: operation, arguments but bodies
        self.sent_parts: dict[str, list[tuple[int, int]]] = {}  # key -> (part number, size) of each part received
        self._lock = threading.RLock()
        self._counts: Counter[str] = Counter()
        self._failures: dict[tuple[str, int], BaseException] = {}
        self._cuts: list[int] = []
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------------------- breaking it

    def fail(self, operation: str, error: BaseException, *, on_call: int = 1, times: int = 1) -> None:
        """Raise ``error`` on call ``on_call`` (1-based, counted from now on) of ``operation``, ``times`` in a row."""
        start = self._counts[operation] + on_call
        for n in range(start, start + times):
            self._failures[(operation, n)] = error

    def cut_bodies(self, after: int, times: int = 1) -> None:
        """The next ``times`` GET bodies end in a reset connection after ``after`` bytes (0: at once)."""
        self._cuts.extend([after] * times)

    # ------------------------------------------------------------------------------- looking at it

    def contents(self, bucket: str = "b") -> dict[str, bytes]:
        return {key: o.data for key, o in self.buckets[bucket].items()}

    def calls(self, operation: str) -> list[dict[str, Any]]:
        return [args for op, args in self.requests if op == operation]

    def operations(self) -> list[str]:
        return [op for op, _args in self.requests]

    # ------------------------------------------------------------------------------------ helpers

    def _enter(self, operation: str, args: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((operation, {k: v for k, v in args.items() if k != "Body"}))
            self._counts[operation] += 1
            error = self._failures.pop((operation, self._counts[operation]), None)
        if error is not None:
            raise error
        bucket = args.get("Bucket")
        if bucket not in self.buckets:
            raise client_error("NoSuchBucket", 404, OPERATION_NAMES[operation], BucketName=str(bucket))

    def _object(self, operation: str, bucket: str, key: str) -> StoredObject:
        o = self.buckets[bucket].get(key)
        if o is None:
            code = "404" if operation == "head_object" else "NoSuchKey"
            raise client_error(code, 404, OPERATION_NAMES[operation])
        return o

    def _upload(self, operation: str, upload_id: str, key: str) -> OpenUpload:
        up = self.uploads.get(upload_id)
        if up is None or up.key != key:
            raise client_error("NoSuchUpload", 404, OPERATION_NAMES[operation])
        return up

    # --------------------------------------------------------------------------------- objects

    def list_objects_v2(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        ContinuationToken: str = "",
        MaxKeys: int | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        self._enter("list_objects_v2", {"Bucket": Bucket, "Prefix": Prefix, "ContinuationToken": ContinuationToken})
        keys = sorted(k for k in self.buckets[Bucket] if k.startswith(Prefix) and k > ContinuationToken)
        page = keys[: MaxKeys or self.page_size]
        objects = self.buckets[Bucket]
        reply: dict[str, Any] = {
            "Contents": [
                {"Key": k, "Size": len(o.data), "LastModified": o.last_modified, "ETag": o.etag}
                for k, o in ((k, objects[k]) for k in page)
            ],
            "KeyCount": len(page),
            "IsTruncated": len(page) < len(keys),
        }
        if reply["IsTruncated"]:
            reply["NextContinuationToken"] = page[-1]
        return reply

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self._enter("head_object", {"Bucket": Bucket, "Key": Key})
        o = self._object("head_object", Bucket, Key)
        return {"ContentLength": len(o.data), "LastModified": o.last_modified, "ETag": o.etag, "Metadata": o.metadata}

    def get_object(self, *, Bucket: str, Key: str, Range: str = "", IfMatch: str = "") -> dict[str, Any]:  # noqa: N803
        self._enter("get_object", {"Bucket": Bucket, "Key": Key, "Range": Range, "IfMatch": IfMatch})
        o = self._object("get_object", Bucket, Key)
        if IfMatch and IfMatch != o.etag:
            raise client_error("PreconditionFailed", 412, "GetObject")
        start, end = 0, len(o.data) - 1
        if Range:
            first, _, last = Range.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) if last else end, end)
        body = o.data[start : end + 1]
        with self._lock:
            allow = self._cuts.pop(0) if self._cuts else None
        reply = {
            "ContentLength": len(body),
            "ETag": o.etag,
            "LastModified": o.last_modified,
            "Metadata": o.metadata,
            "Body": CutBody(body, allow),
        }
        if Range:
            reply["ContentRange"] = f"bytes {start}-{end}/{len(o.data)}"
        return reply

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Body: bytes,  # noqa: N803
        IfNoneMatch: str = "",  # noqa: N803
        Metadata: dict[str, str] | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        self._enter("put_object", {"Bucket": Bucket, "Key": Key, "IfNoneMatch": IfNoneMatch, "Metadata": Metadata})
        data = bytes(Body)
        with self._lock:
            if IfNoneMatch == "*" and Key in self.buckets[Bucket]:
                raise client_error("PreconditionFailed", 412, "PutObject")
            self.buckets[Bucket][Key] = StoredObject(data, md5_etag(data), dict(Metadata or {}))
        return {"ETag": md5_etag(data)}

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self._enter("delete_object", {"Bucket": Bucket, "Key": Key})
        self.buckets[Bucket].pop(Key, None)
        return {}

    # ------------------------------------------------------------------------------- multipart

    def create_multipart_upload(
        self,
        *,
        Bucket: str,
        Key: str,
        Metadata: dict[str, str] | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        self._enter("create_multipart_upload", {"Bucket": Bucket, "Key": Key, "Metadata": Metadata})
        with self._lock:
            upload_id = f"u{next(self._ids)}"
            self.uploads[upload_id] = OpenUpload(upload_id, Bucket, Key, dict(Metadata or {}))
        return {"UploadId": upload_id}

    def upload_part(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
        PartNumber: int,  # noqa: N803
        Body: Any,  # noqa: N803
        ContentLength: int | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        self._enter("upload_part", {"Bucket": Bucket, "Key": Key, "UploadId": UploadId, "PartNumber": PartNumber})
        up = self._upload("upload_part", UploadId, Key)
        if isinstance(Body, bytes | bytearray):
            data = bytes(Body)
        else:  # a file: a signing pass cut short, then a rewind, as botocore may do
            Body.read(100)
            Body.seek(0)
            data = Body.read()
        if ContentLength is not None and len(data) != ContentLength:
            raise client_error("IncompleteBody", 400, "UploadPart")
        with self._lock:
            up.parts[PartNumber] = data
            self.sent_parts.setdefault(Key, []).append((PartNumber, len(data)))
        return {"ETag": md5_etag(data)}

    def complete_multipart_upload(
        self,
        *,
        Bucket: str,
        Key: str,
        UploadId: str,
        MultipartUpload: dict[str, Any],  # noqa: N803
    ) -> dict[str, Any]:
        self._enter("complete_multipart_upload", {"Bucket": Bucket, "Key": Key, "UploadId": UploadId})
        up = self._upload("complete_multipart_upload", UploadId, Key)
        listed = MultipartUpload["Parts"]
        numbers = [p["PartNumber"] for p in listed]
        if not numbers or numbers != sorted(set(numbers)):
            raise client_error("InvalidPartOrder", 400, "CompleteMultipartUpload")
        for p in listed:
            if p["PartNumber"] not in up.parts or md5_etag(up.parts[p["PartNumber"]]) != p["ETag"]:
                raise client_error("InvalidPart", 400, "CompleteMultipartUpload")
        data = b"".join(up.parts[n] for n in numbers)
        digest = hashlib.md5(b"".join(bytes.fromhex(md5_etag(up.parts[n]).strip('"')) for n in numbers))
        with self._lock:
            del self.uploads[UploadId]
            etag = f'"{digest.hexdigest()}-{len(numbers)}"'
            self.buckets[Bucket][Key] = StoredObject(data, etag, up.metadata)
        return {"ETag": etag}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:  # noqa: N803
        self._enter("abort_multipart_upload", {"Bucket": Bucket, "Key": Key, "UploadId": UploadId})
        self._upload("abort_multipart_upload", UploadId, Key)
        with self._lock:
            del self.uploads[UploadId]
        return {}

    def list_multipart_uploads(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        UploadIdMarker: str = "",
        KeyMarker: str = "",  # noqa: N803
    ) -> dict[str, Any]:
        self._enter("list_multipart_uploads", {"Bucket": Bucket, "Prefix": Prefix, "UploadIdMarker": UploadIdMarker})
        ups = sorted(
            (u for u in self.uploads.values() if u.bucket == Bucket and u.key.startswith(Prefix)),
            key=lambda u: (u.key, int(u.upload_id[1:])),
        )
        if UploadIdMarker:
            ups = ups[[u.upload_id for u in ups].index(UploadIdMarker) + 1 :]
        page = ups[: self.page_size]
        reply: dict[str, Any] = {
            "Uploads": [{"Key": u.key, "UploadId": u.upload_id, "Initiated": u.initiated} for u in page],
            "IsTruncated": len(page) < len(ups),
        }
        if reply["IsTruncated"]:
            reply["NextUploadIdMarker"], reply["NextKeyMarker"] = page[-1].upload_id, page[-1].key
        return reply

    def list_parts(self, *, Bucket: str, Key: str, UploadId: str, PartNumberMarker: int = 0) -> dict[str, Any]:  # noqa: N803
        self._enter("list_parts", {"Bucket": Bucket, "Key": Key, "UploadId": UploadId, "Marker": PartNumberMarker})
        up = self._upload("list_parts", UploadId, Key)
        numbers = sorted(n for n in up.parts if n > PartNumberMarker)
        page = numbers[: self.page_size]
        reply: dict[str, Any] = {
            "Parts": [{"PartNumber": n, "Size": len(up.parts[n]), "ETag": md5_etag(up.parts[n])} for n in page],
            "IsTruncated": len(page) < len(numbers),
        }
        if reply["IsTruncated"]:
            reply["NextPartNumberMarker"] = page[-1]
        return reply

    def get_paginator(self, operation: str) -> Paginator:
        return Paginator(self, operation)


# What each paged operation answers with for "more", and the argument that asks for the next page.
_PAGING = {
    "list_objects_v2": (("NextContinuationToken", "ContinuationToken"),),
    "list_multipart_uploads": (("NextUploadIdMarker", "UploadIdMarker"), ("NextKeyMarker", "KeyMarker")),
    "list_parts": (("NextPartNumberMarker", "PartNumberMarker"),),
}


class Paginator:
    def __init__(self, fake: FakeS3, operation: str) -> None:
        self._call = getattr(fake, operation)
        self._paging = _PAGING[operation]

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        args = dict(kwargs)
        while True:
            page = self._call(**args)
            yield page
            if not page.get("IsTruncated"):
                return
            for answer, ask in self._paging:
                args[ask] = page[answer]
