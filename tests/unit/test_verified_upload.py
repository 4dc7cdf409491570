"""The verified upload against a fake S3 client: resume rules, re-uploads, aborts, completing only what matches."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime
from typing import Any

import pytest

from offline_bundle.errors import VerificationError
from offline_bundle.storage.store import S3Store
from offline_bundle.transfer.verified_upload import PieceSource, upload_verified

PIECE = 5 << 20


class FakeS3:
    """Multipart uploads keyed by id; parts hold the bytes they were sent."""

    def __init__(self) -> None:
        self.uploads: dict[str, tuple[str, dict[int, bytes]]] = {}
        self.objects: dict[str, bytes] = {}
        self.sent: list[int] = []
        self.aborted: list[str] = []

    def create_multipart_upload(self, Bucket: str, Key: str) -> dict[str, str]:  # noqa: N803
        uid = f"u{len(self.uploads) + 1}"
        self.uploads[uid] = (Key, {})
        return {"UploadId": uid}

    def upload_part(self, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: Any, ContentLength: int):  # noqa: N803
        Body.read(100)  # a signing pass that is cut short, then a rewind, as botocore may do
        Body.seek(0)
        data = Body.read()
        assert len(data) == ContentLength
        self.uploads[UploadId][1][PartNumber] = data
        self.sent.append(PartNumber)
        return {"ETag": f'"{hashlib.md5(data).hexdigest()}"'}

    def complete_multipart_upload(self, Bucket: str, Key: str, UploadId: str, MultipartUpload: Any) -> None:  # noqa: N803
        key, parts = self.uploads.pop(UploadId)
        for p in MultipartUpload["Parts"]:
            assert p["ETag"].strip('"') == hashlib.md5(parts[p["PartNumber"]]).hexdigest()
        self.objects[key] = b"".join(parts[p["PartNumber"]] for p in MultipartUpload["Parts"])

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> None:  # noqa: N803
        self.uploads.pop(UploadId)
        self.aborted.append(UploadId)

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"ContentLength": len(self.objects[Key]), "LastModified": datetime.now(UTC)}

    def get_paginator(self, name: str) -> Any:
        fake = self

        class Pages:
            def paginate(self, **kw: Any) -> list[dict[str, Any]]:
                if name == "list_multipart_uploads":
                    ups = [
                        {"Key": k, "UploadId": u, "Initiated": datetime.now(UTC)} for u, (k, _p) in fake.uploads.items()
                    ]
                    return [{"Uploads": ups}]
                parts = fake.uploads[kw["UploadId"]][1]
                listed = [
                    {"PartNumber": n, "Size": len(d), "ETag": f'"{hashlib.md5(d).hexdigest()}"'}
                    for n, d in sorted(parts.items())
                ]
                return [{"Parts": listed}]

        return Pages()


def fake_store() -> tuple[S3Store, FakeS3]:
    store = S3Store.__new__(S3Store)
    fake = FakeS3()
    store.client, store.bucket, store.description = fake, "b", "fake"
    return store, fake


def pieces_of(data: bytes, hashes: bool = True) -> list[PieceSource]:
    out = []
    for n, off in enumerate(range(0, len(data), PIECE), 1):
        chunk = data[off : off + PIECE]
        out.append(
            PieceSource(
                n,
                len(chunk),
                hashlib.sha256(chunk).hexdigest() if hashes else None,
                f"piece {n:05d}",
                lambda chunk=chunk: io.BytesIO(chunk),
            )
        )
    return out


DATA = os.urandom(3 * PIECE + 17)
SHA = hashlib.sha256(DATA).hexdigest()


def test_it_completes_only_a_payload_that_matches() -> None:
    store, fake = fake_store()
    out = upload_verified(store, "k", len(DATA), SHA, pieces_of(DATA), lambda _m: None, label="p")
    assert fake.objects["k"] == DATA and (out.uploaded, out.resumed) == (4, 0)


def test_a_resumed_upload_keeps_parts_whose_md5_matches_and_sends_the_others_again() -> None:
    store, fake = fake_store()
    uid = fake.create_multipart_upload(Bucket="b", Key="k")["UploadId"]
    fake.uploads[uid][1].update({1: DATA[:PIECE], 2: b"x" * PIECE, 3: DATA[2 * PIECE : 2 * PIECE + 10]})
    lines: list[str] = []
    out = upload_verified(store, "k", len(DATA), SHA, pieces_of(DATA), lines.append, label="p")
    assert fake.objects["k"] == DATA
    assert (out.uploaded, out.resumed) == (3, 1) and fake.sent == [2, 3, 4]
    assert "resuming an interrupted upload (2 of 4 part(s) already there)" in lines[0]


def test_a_bad_piece_is_named_and_the_upload_aborted() -> None:
    store, fake = fake_store()
    pieces = pieces_of(DATA)
    bad = bytearray(DATA)
    bad[PIECE + 3] ^= 1
    pieces[1] = PieceSource(
        2, PIECE, pieces[1].sha256, "piece 00002", lambda: io.BytesIO(bytes(bad[PIECE : 2 * PIECE]))
    )
    with pytest.raises(VerificationError, match="piece 00002 does not match"):
        upload_verified(store, "k", len(DATA), SHA, pieces, lambda _m: None, label="p")
    assert fake.objects == {} and fake.uploads == {} and fake.aborted == ["u1"]


def test_pieces_that_agree_with_each_other_but_not_with_the_manifest_are_refused() -> None:
    store, fake = fake_store()
    with pytest.raises(VerificationError, match="do not match the signed manifest"):
        upload_verified(store, "k", len(DATA), "0" * 64, pieces_of(DATA, hashes=False), lambda _m: None, label="p")
    assert fake.objects == {} and fake.uploads == {}


def test_pieces_must_cover_the_payload_exactly() -> None:
    store, _ = fake_store()
    with pytest.raises(VerificationError, match="exactly once"):
        upload_verified(store, "k", len(DATA) + 1, SHA, pieces_of(DATA), lambda _m: None, label="p")
