"""The verified upload against a fake S3 client: resume rules, re-uploads, aborts, completing only what matches."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from offline_bundle.errors import VerificationError
from offline_bundle.storage.s3.settings import S3Settings
from offline_bundle.storage.s3.store import S3Store
from offline_bundle.transfer.verified_upload import PieceSource, upload_verified
from tests.support.fake_s3 import FakeS3

PIECE = 5 << 20


def fake_store() -> tuple[S3Store, FakeS3]:
    fake = FakeS3()
    return S3Store(S3Settings(bucket="b"), client=fake), fake


def parts_sent(fake: FakeS3, since: int = 0) -> list[int]:
    return [args["PartNumber"] for op, args in fake.requests[since:] if op == "upload_part"]


def aborted(fake: FakeS3) -> list[str]:
    return [args["UploadId"] for args in fake.calls("abort_multipart_upload")]


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
    assert fake.contents()["k"] == DATA and (out.uploaded, out.resumed) == (4, 0)


def test_a_resumed_upload_keeps_parts_whose_md5_matches_and_sends_the_others_again() -> None:
    store, fake = fake_store()
    uid = fake.create_multipart_upload(Bucket="b", Key="k")["UploadId"]
    for number, body in {1: DATA[:PIECE], 2: b"x" * PIECE, 3: DATA[2 * PIECE : 2 * PIECE + 10]}.items():
        fake.upload_part(Bucket="b", Key="k", UploadId=uid, PartNumber=number, Body=body)
    mark = len(fake.requests)
    lines: list[str] = []
    out = upload_verified(store, "k", len(DATA), SHA, pieces_of(DATA), lines.append, label="p")
    assert fake.contents()["k"] == DATA
    assert (out.uploaded, out.resumed) == (3, 1) and parts_sent(fake, mark) == [2, 3, 4]
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
    assert fake.contents() == {} and fake.uploads == {} and aborted(fake) == ["u1"]


def test_pieces_that_agree_with_each_other_but_not_with_the_manifest_are_refused() -> None:
    store, fake = fake_store()
    with pytest.raises(VerificationError, match="do not match the signed manifest"):
        upload_verified(store, "k", len(DATA), "0" * 64, pieces_of(DATA, hashes=False), lambda _m: None, label="p")
    assert fake.contents() == {} and fake.uploads == {}


def test_pieces_must_cover_the_payload_exactly() -> None:
    store, _ = fake_store()
    with pytest.raises(VerificationError, match="exactly once"):
        upload_verified(store, "k", len(DATA) + 1, SHA, pieces_of(DATA), lambda _m: None, label="p")
