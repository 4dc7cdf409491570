"""A multipart upload straight to a payload's final key, completed only when every byte checks out.

Import and mirror know a payload's name (its SHA-256, from the signed manifest) before they send a
byte, so unlike a put they upload straight to ``_blobs/<sha256>``: that object does not exist until
CompleteMultipartUpload, which is sent only after each piece's SHA-256 (when the medium's index gives
one) and the whole payload's size and SHA-256 matched. A mismatch aborts the upload, so a damaged or
tampered transfer leaves nothing under the payload's name.

Resuming: an upload interrupted by a kill or a dead link stays open in the store. The next run finds
it (ListMultipartUploads on the key), lists its parts, and keeps a part when its size and its ETag
(the MD5 of the part, as S3 and SeaweedFS report it for parts not encrypted with KMS) equal those of
the piece read again from its source. The re-read also feeds the payload hash, so no byte is trusted
unseen; a part whose ETag is not a plain MD5 is simply uploaded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from .errors import ConfigError, StoreError, VerificationError
from .progress import Progress
from .store import S3Store, Store, _ride_out_outage, _s3_error

Log = Callable[[str], None]
CHUNK = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MD5 = re.compile(r"[0-9a-f]{32}\Z")


@dataclass(frozen=True)
class PieceSource:
    """One part of the upload: ``open()`` gives a seekable stream of exactly ``size`` bytes at position 0."""

    number: int
    size: int
    sha256: str | None  # what the medium's index says; None when the source has no per-piece hash
    label: str  # how messages name it, e.g. "piece 00003 (/media/usb/.../00003)"
    open: Callable[[], BinaryIO]


@dataclass(frozen=True)
class UploadOutcome:
    uploaded: int  # pieces sent in this run
    resumed: int  # pieces kept from an interrupted upload, after checking them
    bytes_sent: int


def _etag(value: object) -> str:
    return str(value or "").strip('"').lower()


class HashingBody(io.RawIOBase):
    """A piece as botocore reads it, hashed in the pass that is sent.

    botocore may read a body more than once (over plain HTTP to sign its SHA-256, and again after a
    retry), rewinding to 0 in between; the hashes restart at every rewind, so they always describe
    the last complete pass: the bytes the store received (the signature covers them over HTTP, and
    the part's ETag is compared with their MD5).
    """

    def __init__(self, raw: BinaryIO, size: int, whole_before: Any) -> None:
        self._raw = raw
        self._size = size
        self._base = whole_before.copy()
        self._pos = 0
        self._restart()

    def _restart(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.whole = self._base.copy()
        self._hashed = 0

    @property
    def complete(self) -> bool:
        return self._hashed == self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        self._raw.seek(self._pos)
        if self._pos == 0:
            self._restart()
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, self._size - self._pos)
        n = left if size is None or size < 0 else min(size, left)
        data = self._raw.read(n) if n else b""
        if data and self._pos == self._hashed:
            self.sha256.update(data)
            self.md5.update(data)
            self.whole.update(data)
            self._hashed += len(data)
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def consume(self) -> None:
        while self.read(CHUNK):
            pass


def upload_verified(
    store: Store,
    key: str,
    size: int,
    sha256: str,
    pieces: Sequence[PieceSource],
    log: Log,
    *,
    label: str,
) -> UploadOutcome:
    """Upload ``pieces`` in order as the object ``key``; complete it only if they are the payload.

    A failed check aborts the upload (nothing appears under ``key``); any other failure leaves it
    open for the next run to resume.
    """
    if not isinstance(store, S3Store):
        raise ConfigError(f"{store.description}: importing and mirroring write to S3 stores only")
    numbers = [p.number for p in pieces]
    if numbers != list(range(1, len(pieces) + 1)) or sum(p.size for p in pieces) != size:
        raise VerificationError(f"{label}: the pieces do not cover the payload's {size} bytes exactly once")
    if size == 0:  # a multipart upload needs a part; the empty payload is one empty PUT
        if sha256 != EMPTY_SHA256:
            raise VerificationError(f"{label}: an empty payload does not match the signed manifest's SHA-256")
        store.put_bytes(key, b"")
        return UploadOutcome(0, 0, 0)

    upload_id, parts = _resume_or_start(store, key, pieces, log, label)
    progress = Progress(label, size)
    whole = hashlib.sha256()
    etags: dict[int, str] = {}
    uploaded = resumed = sent = 0
    try:
        for piece in pieces:
            with piece.open() as raw:
                body = HashingBody(raw, piece.size, whole)
                etag = None
                old = parts.get(piece.number)
                if old is not None and old[0] == piece.size and _MD5.match(old[1]):
                    body.consume()
                    if body.complete and body.md5.hexdigest() == old[1]:
                        etag, resumed = old[1], resumed + 1
                    else:
                        body.seek(0)
                if etag is None:
                    etag = _upload_part(store, key, upload_id, piece, body)
                    uploaded, sent = uploaded + 1, sent + piece.size
            if not body.complete:
                raise StoreError(f"{label}: {piece.label} was not read in one pass; nothing was completed")
            if piece.sha256 is not None and body.sha256.hexdigest() != piece.sha256:
                raise VerificationError(
                    f"{label}: {piece.label} does not match the SHA-256 its index gives: "
                    "the piece was damaged or altered; the upload was aborted and nothing was committed"
                )
            whole = body.whole
            etags[piece.number] = etag
            progress.add(piece.size)
        if whole.hexdigest() != sha256:
            raise VerificationError(
                f"{label}: the pieces together do not match the signed manifest's SHA-256 "
                "(pieces and index were altered alike); the upload was aborted and nothing was committed"
            )
        try:
            store.client.complete_multipart_upload(  # type: ignore[attr-defined]
                Bucket=store.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{e}"'} for n, e in sorted(etags.items())]},
            )
        except Exception as e:  # noqa: BLE001
            raise _s3_error(e, f"completing the upload of {key}") from None
    except VerificationError:
        _abort(store, key, upload_id)
        raise
    info = store.head(key)
    if info is None or info.size != size:
        raise StoreError(f"{label}: {key} is not {size} bytes after completing its upload")
    progress.finish()
    return UploadOutcome(uploaded, resumed, sent)


def _abort(store: S3Store, key: str, upload_id: str) -> None:
    with contextlib.suppress(StoreError):  # else prune and the bucket's lifecycle rule clear what is left
        store.abort_upload(key, upload_id)


def _upload_part(store: S3Store, key: str, upload_id: str, piece: PieceSource, body: HashingBody) -> str:
    def attempt() -> Any:
        body.seek(0)  # every attempt sends (and hashes) the piece from its start
        return store.client.upload_part(  # type: ignore[attr-defined]
            Bucket=store.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=piece.number,
            Body=body,
            ContentLength=piece.size,
        )

    try:
        r = _ride_out_outage(attempt)
    except Exception as e:  # noqa: BLE001
        raise _s3_error(e, f"uploading {piece.label} to {key}") from None
    etag = _etag(r.get("ETag"))
    if body.complete and _MD5.match(etag) and etag != body.md5.hexdigest():
        raise VerificationError(f"the store received other bytes for {piece.label} than were read (its ETag differs)")
    return etag


def _list_parts(store: S3Store, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
    parts: dict[int, tuple[int, str]] = {}
    pages = store.client.get_paginator("list_parts").paginate(  # type: ignore[attr-defined]
        Bucket=store.bucket, Key=key, UploadId=upload_id
    )
    for page in pages:
        for p in page.get("Parts", []):
            parts[int(p["PartNumber"])] = (int(p["Size"]), _etag(p.get("ETag")))
    return parts


def _resume_or_start(
    store: S3Store, key: str, pieces: Sequence[PieceSource], log: Log, label: str
) -> tuple[str, dict[int, tuple[int, str]]]:
    """The newest interrupted upload of ``key`` and its parts that fit these pieces, or a new upload.

    A part of another size (a cut-off upload, another piece size) is simply uploaded again under its
    number; parts beyond the pieces are left out of the completion, which discards them.
    """
    try:
        uploads = [u for u in store.list_uploads(key) if u.key == key]
    except StoreError:
        uploads = []  # a store (or identity) that cannot list uploads: start afresh
    if uploads:
        newest = max(uploads, key=lambda u: u.initiated)
        sizes = {p.number: p.size for p in pieces}
        try:
            listed = _list_parts(store, key, newest.upload_id)
        except Exception:  # noqa: BLE001 - gone meanwhile, or not listable: start afresh
            listed = None
        if listed is not None:
            parts = {n: part for n, part in listed.items() if sizes.get(n) == part[0]}
            log(f"{label}: resuming an interrupted upload ({len(parts)} of {len(pieces)} part(s) already there)")
            return newest.upload_id, parts
    try:
        r = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001
        raise _s3_error(e, f"starting the upload of {key}") from None
    return r["UploadId"], {}
