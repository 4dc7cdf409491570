"""Multipart uploads: the one part buffer every streamed write to S3 goes through.

A payload (``S3Store.writer``) and a published file (publish's object writer) both arrive as a stream
of chunks of unknown rhythm and must land under a key chosen before the first byte. They share this
writer so that splitting at part boundaries, the bounded number of parts in flight, the single PUT
for what fits in one part and the cleanup of an abandoned upload are written (and fixed) once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from offline_bundle.errors import StoreError
from offline_bundle.storage.base import MAX_PARTS
from offline_bundle.storage.s3.client import ride_out_outage, s3_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

OnBytes = Callable[[int], None]


def start_upload(client: S3Client, bucket: str, key: str, metadata: Mapping[str, str] | None = None) -> str:
    """A new multipart upload of ``key``; its id. ``metadata`` becomes the object's user metadata."""
    resp = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=dict(metadata or {}))
    return resp["UploadId"]


def complete_upload(client: S3Client, bucket: str, key: str, upload_id: str, etags: Mapping[int, str]) -> None:
    """Make the object of ``key`` from the parts numbered in ``etags`` (ETags as the store gave them)."""
    parts: list[CompletedPartTypeDef] = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})


def list_parts(client: S3Client, bucket: str, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
    """The parts an upload holds: number -> (size, ETag as the store gives it)."""
    parts: dict[int, tuple[int, str]] = {}
    for page in client.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id):
        for p in page.get("Parts", []):
            parts[int(p.get("PartNumber", 0))] = (int(p.get("Size", 0)), str(p.get("ETag", "")))
    return parts


class PartUploads:
    """Parallel part uploads of one multipart upload, with a bounded number of parts in flight.

    A part that fails is re-raised on the producing thread at its next ``submit`` or at ``finish``.
    """

    def __init__(
        self, client: S3Client, bucket: str, key: str, concurrency: int, metadata: Mapping[str, str] | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.upload_id: str | None = None
        self._metadata = metadata
        self._etags: dict[int, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
        self._slots = threading.Semaphore(concurrency)
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def start(self) -> None:
        self.upload_id = start_upload(self.client, self.bucket, self.key, self._metadata)

    def submit(self, number: int, body: bytes, on_done: OnBytes | None) -> None:
        if self._error is not None:
            raise self._error
        self._slots.acquire()
        self._futures.append(self._pool.submit(self._send, number, body, on_done))

    def _send(self, number: int, body: bytes, on_done: OnBytes | None) -> None:
        upload_id = self.upload_id or ""
        try:
            resp = ride_out_outage(
                lambda: self.client.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=body
                )
            )
            with self._lock:
                self._etags[number] = resp["ETag"]
            if on_done:
                on_done(len(body))
        except BaseException as e:  # noqa: BLE001 - re-raised on the producing thread
            self._error = e
        finally:
            self._slots.release()

    def finish(self) -> None:
        for f in self._futures:
            f.result()
        self._pool.shutdown()
        if self._error is not None:
            raise self._error
        complete_upload(self.client, self.bucket, self.key, self.upload_id or "", self._etags)

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id:
            # Best effort: prune and the bucket lifecycle rule remove what is left.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


class MultipartWriter:
    """Buffers one part at a time, straight to ``key``; what never fills a part goes up as one PUT.

    The key is chosen before the first byte, so there is no temporary name and no server-side copy:
    a multipart upload makes no object until it is completed, and an aborted one leaves nothing.
    Payload buffers take at most ``(concurrency + 2) * part_size`` bytes (``choose_concurrency``).
    ``where`` names the store in the message of a failed single PUT.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        part_size: int,
        concurrency: int,
        on_bytes: OnBytes | None = None,
        metadata: Mapping[str, str] | None = None,
        where: str | None = None,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self.part_size = part_size
        self.concurrency = concurrency
        self._on_bytes = on_bytes
        self._metadata = metadata
        self._where = where
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._number = 0
        self._parts: PartUploads | None = None

    def write(self, chunk: bytes) -> None:
        while chunk:
            # Split a chunk at the part boundary so that joining a part copies exactly one part.
            room = self.part_size - self._buffered
            head, chunk = (chunk, b"") if len(chunk) <= room else (chunk[:room], chunk[room:])
            self._chunks.append(head)
            self._buffered += len(head)
            if self._buffered == self.part_size:
                self._flush()

    def _take(self) -> bytes:
        body = b"".join(self._chunks)
        self._chunks, self._buffered = [], 0
        return body

    def _flush(self) -> None:
        body = self._take()
        if self._parts is None:
            parts = PartUploads(self._client, self._bucket, self._key, self.concurrency, self._metadata)
            try:
                parts.start()
            except Exception as e:  # noqa: BLE001
                raise s3_error(e, f"starting the upload of {self._key}") from None
            self._parts = parts
        self._number += 1
        if self._number > MAX_PARTS:
            raise StoreError("payload outgrew 10,000 parts: the size estimate was far too low")
        try:
            self._parts.submit(self._number, body, self._on_bytes)
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise s3_error(e, f"uploading {self._key}") from None

    def finish(self) -> None:
        """Complete the upload (or send the one PUT); the object exists only once this returns."""
        if self._parts is None:
            self._put_whole(self._take())
            return
        if self._buffered:
            self._flush()
        try:
            self._parts.finish()
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise s3_error(e, f"completing the upload of {self._key}") from None

    def _put_whole(self, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=data, Metadata=dict(self._metadata or {}))
        except Exception as e:  # noqa: BLE001
            raise s3_error(e, f"writing {self._key}", self._where) from None
        if self._on_bytes:
            self._on_bytes(len(data))

    def abort(self) -> None:
        """Drop the buffer and the upload: no object appears, the parts sent are discarded."""
        self._chunks, self._buffered = [], 0
        if self._parts is not None:
            self._parts.abort()
            self._parts = None
