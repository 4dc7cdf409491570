"""A multipart upload straight to a payload's final key: no byte is sent before it matched a hash.

Import and mirror know a payload's key (``_blobs/<id>``) and SHA-256 from the signed manifest before
they read a byte, so they upload straight to that key, as a put does: the object does not exist until
CompleteMultipartUpload, which is sent only after the whole payload's size and SHA-256 matched.

Nothing is sent unverified, even into an upload that is never completed: the parts of an open (or
aborted-too-late) upload can be listed, read and completed by anyone who may write to the bucket,
so a byte sent before its check could leave the machine for good. Each piece is therefore read
twice. The first read hashes it — the whole piece (SHA-256 and MD5) and each 1 MiB block of it —
and the piece must match its expected hash before anything of it is sent. The second read is the
one that is sent: each block is read into memory, hashed, and handed to the HTTP client only when
it equals the block the first read saw, so a file that changes in between (or a device that
answers a second read differently) is stopped before the changed block leaves.

What a piece is checked against:

- pieces with a hash of their own (a medium's index, written by ``export``): that hash, piece by
  piece. The index is unsigned, but bytes can only match a hash their writer chose if that writer
  knew them: nothing of this machine that the carrier did not already hold can pass. The whole
  payload's SHA-256 from the signed manifest still decides whether the upload is completed. The
  second read of a piece follows its first at once, so it is mostly served from the page cache.
- pieces without one (a payload file written by ``pack --to-dir``, a payload mirrored from
  another store): every piece is read first and the whole payload must match the signed
  manifest's SHA-256 before the upload is even started; the second pass then checks each block
  against the first. The cost is one more full read of the source.

Resuming: an upload interrupted by a kill or a dead link stays open in the store. The next run finds
it (ListMultipartUploads on the key), lists its parts, and keeps a part when its size and its ETag
(the MD5 of the part, as S3 and SeaweedFS report it for parts not encrypted with KMS) equal those of
the piece's verified first read; a part whose ETag is not a plain MD5 is simply uploaded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from offline_bundle.core.log import Log
from offline_bundle.core.progress import Progress
from offline_bundle.core.streams import SeekableStream
from offline_bundle.errors import ConfigError, StoreError, VerificationError
from offline_bundle.storage.base import Store
from offline_bundle.storage.s3.client import ride_out_outage, s3_error
from offline_bundle.storage.s3.multipart import complete_upload, list_parts, start_upload
from offline_bundle.storage.s3.store import S3Store

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import UploadPartOutputTypeDef

CHUNK = 1 << 20
BLOCK = 1 << 20  # the unit the second read checks before sending; its digests take 32 bytes per MiB
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


@dataclass(frozen=True)
class Survey:
    """What the first read of a piece saw: its SHA-256 and MD5, and the SHA-256 of each ``BLOCK``."""

    sha256: str
    md5: str
    blocks: tuple[bytes, ...]


def _etag(value: object) -> str:
    return str(value or "").strip('"').lower()


def _read_exactly(raw: BinaryIO, n: int, label: str) -> bytes:
    chunks = []
    left = n
    while left:
        data = raw.read(left)
        if not data:
            raise VerificationError(f"{label} ended {left} bytes short of its {n}-byte block; nothing of it was sent")
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def survey(raw: BinaryIO, size: int, whole: Any, label: str, on_bytes: Callable[[int], None] | None = None) -> Survey:
    """Read ``size`` bytes of a piece once, feeding ``whole`` too; the stream must end there."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    blocks = []
    for start in range(0, size, BLOCK):
        data = _read_exactly(raw, min(BLOCK, size - start), label)
        sha.update(data)
        md5.update(data)
        whole.update(data)
        blocks.append(hashlib.sha256(data).digest())
        if on_bytes:
            on_bytes(len(data))
    if raw.read(1):
        raise VerificationError(f"{label} is longer than the {size} bytes expected; nothing of it was sent")
    return Survey(sha.hexdigest(), md5.hexdigest(), tuple(blocks))


class BlockChanged(BaseException):  # noqa: N818 - not an error of its own: see the docstring
    """A block read for sending differs from the first read.

    A BaseException on purpose: botocore wraps any ``Exception`` a body raises into a retryable
    HTTPClientError and would send the request again a dozen times; this one passes through the
    HTTP client (which drops the connection, so the part is never stored) to ``_upload_part``,
    which turns it into a ``VerificationError``.
    """


class VerifiedBody(SeekableStream):
    """A piece as botocore reads it: only bytes of blocks that equal the first read are handed over.

    botocore may read a body more than once (over plain HTTP to sign its SHA-256, and again after a
    retry) and seeks back in between; every block is read and checked again on each pass.
    """

    def __init__(self, raw: BinaryIO, size: int, seen: Survey, label: str) -> None:
        self._raw = raw
        self._length = size
        self._seen = seen
        self._label = label
        self._pos = 0
        self._block = -1
        self._buf = b""

    def _load(self, block: int) -> None:
        start = block * BLOCK
        self._raw.seek(start)
        try:
            data = _read_exactly(self._raw, min(BLOCK, self._length - start), self._label)
        except VerificationError as e:  # the piece got shorter since its check
            raise BlockChanged(str(e)) from None
        if hashlib.sha256(data).digest() != self._seen.blocks[block]:
            self._block, self._buf = -1, b""
            raise BlockChanged(
                f"{self._label} changed between its check and its upload (bytes {start}-{start + len(data) - 1}); "
                "the changed bytes were not sent and nothing was committed"
            )
        self._block, self._buf = block, data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # all the rest: built from checked blocks too
            return b"".join(iter(lambda: self.read(BLOCK), b""))
        if self._pos >= self._length:
            return b""
        block = self._pos // BLOCK
        if block != self._block:
            self._load(block)
        at = self._pos - block * BLOCK
        data = self._buf[at : min(len(self._buf), at + size)]
        self._pos += len(data)
        return data


def holds_payload(store: Store, key: str, size: int, sha256: str, log: Log, *, label: str) -> bool:
    """Whether ``key`` already holds exactly the payload the signed manifest names.

    A HEAD is not enough: size and ETag are whatever the object's writer made them (a multipart
    ETag is no hash of the content), so anyone who may write to the bucket could plant other bytes
    of the same size. The object is read back and hashed: one download from the store being
    written, cheaper than sending the payload again, and the only way when the payload is not at
    hand (a medium exported with ``--since``). Other bytes are reported and then replaced.
    """
    info = store.head(key)
    if info is None:
        return False
    if info.size == size:
        digest = hashlib.sha256()
        reader = store.open_read(key, size)
        try:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
        finally:
            reader.close()
        if digest.hexdigest() == sha256:
            return True
    log(
        f"warning: {label}: {key} in {store.description} holds other bytes than the signed manifest names; "
        "it will be replaced"
    )
    return False


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
    whole = hashlib.sha256()
    indexed = all(p.sha256 is not None for p in pieces)
    seen = {} if indexed else _survey_all(pieces, whole, size, sha256, label)
    upload_id, parts = _resume_or_start(store, key, pieces, log, label)
    sending = _Sending(store, key, upload_id, label, whole, seen, parts)
    progress = Progress(label, size)
    try:
        for piece in pieces:
            sending.piece(piece)
            progress.add(piece.size)
        if indexed and whole.hexdigest() != sha256:
            raise VerificationError(
                f"{label}: the pieces together do not match the signed manifest's SHA-256 "
                "(pieces and index were altered alike); the upload was aborted and nothing was committed"
            )
        sending.complete()
    except VerificationError:
        _abort(store, key, upload_id)
        raise
    info = store.head(key)
    if info is None or info.size != size:
        raise StoreError(f"{label}: {key} is not {size} bytes after completing its upload")
    progress.finish()
    return UploadOutcome(sending.uploaded, sending.resumed, sending.sent)


def _survey_all(pieces: Sequence[PieceSource], whole: Any, size: int, sha256: str, label: str) -> dict[int, Survey]:
    """Pieces without a hash of their own: all of them must match the signed manifest before any is sent."""
    seen: dict[int, Survey] = {}
    checking = Progress(f"{label} (checking)", size)
    for piece in pieces:
        with piece.open() as raw:
            seen[piece.number] = survey(raw, piece.size, whole, f"{label}: {piece.label}", checking.add)
    if whole.hexdigest() != sha256:
        raise VerificationError(f"{label}: the bytes do not match the signed manifest's SHA-256; nothing was sent")
    checking.finish()
    return seen


@dataclass
class _Sending:
    """The pieces of one upload as they are checked and sent (or kept from an interrupted run)."""

    store: S3Store
    key: str
    upload_id: str
    label: str
    whole: Any  # the SHA-256 of the whole payload, fed by first reads made here
    seen: dict[int, Survey]  # first reads made before the upload started
    parts: dict[int, tuple[int, str]]  # parts an interrupted upload already holds: (size, MD5)
    etags: dict[int, str] = field(default_factory=dict)
    uploaded: int = 0
    resumed: int = 0
    sent: int = 0

    def piece(self, piece: PieceSource) -> None:
        with piece.open() as raw:
            first = self._first_read(raw, piece)
            old = self.parts.get(piece.number)
            if old is not None and old == (piece.size, first.md5):
                self.etags[piece.number] = old[1]
                self.resumed += 1
                return
            body = VerifiedBody(raw, piece.size, first, f"{self.label}: {piece.label}")
            self.etags[piece.number] = _upload_part(self.store, self.key, self.upload_id, piece, body, first.md5)
            self.uploaded += 1
            self.sent += piece.size

    def _first_read(self, raw: BinaryIO, piece: PieceSource) -> Survey:
        first = self.seen.get(piece.number)
        if first is None:
            first = survey(raw, piece.size, self.whole, f"{self.label}: {piece.label}")
            if first.sha256 != piece.sha256:
                raise VerificationError(
                    f"{self.label}: {piece.label} does not match the SHA-256 its index gives: the piece was "
                    "damaged or altered; nothing of it was sent, the upload was aborted and nothing was "
                    "committed"
                )
        return first

    def complete(self) -> None:
        etags = {n: f'"{e}"' for n, e in self.etags.items()}
        try:
            complete_upload(self.store.client, self.store.bucket, self.key, self.upload_id, etags)
        except Exception as e:  # noqa: BLE001
            raise s3_error(e, f"completing the upload of {self.key}") from None


def _abort(store: S3Store, key: str, upload_id: str) -> None:
    with contextlib.suppress(StoreError):  # else prune and the bucket's lifecycle rule clear what is left
        store.abort_upload(key, upload_id)


def _upload_part(store: S3Store, key: str, upload_id: str, piece: PieceSource, body: VerifiedBody, md5: str) -> str:
    def attempt() -> UploadPartOutputTypeDef:
        body.seek(0)  # every attempt sends (and checks) the piece from its start
        return store.client.upload_part(
            Bucket=store.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=piece.number,
            # botocore reads, seeks and tells like on any file; the stubs name typing.IO, which
            # io.RawIOBase does not declare itself to be.
            Body=cast(BinaryIO, body),
            ContentLength=piece.size,
        )

    try:
        r = ride_out_outage(attempt)
    except BlockChanged as e:
        raise VerificationError(str(e)) from None
    except Exception as e:  # noqa: BLE001
        raise s3_error(e, f"uploading {piece.label} to {key}") from None
    etag = _etag(r.get("ETag"))
    if _MD5.match(etag) and etag != md5:
        raise VerificationError(f"the store received other bytes for {piece.label} than were read (its ETag differs)")
    return etag


def _list_parts(store: S3Store, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
    """The parts an upload holds: number -> (size, ETag without its quotes)."""
    listed = list_parts(store.client, store.bucket, key, upload_id)
    return {n: (size, _etag(etag)) for n, (size, etag) in listed.items()}


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
        return start_upload(store.client, store.bucket, key), {}
    except Exception as e:  # noqa: BLE001
        raise s3_error(e, f"starting the upload of {key}") from None
