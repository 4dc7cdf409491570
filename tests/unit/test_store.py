"""Part sizing, the multipart writer's buffering (against a fake S3 client), the folder store, the pipe."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from offline_bundle.bundle.pipe import ChunkPipe, PipeClosed
from offline_bundle.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    NoSuchBucketError,
    StoreError,
    VerificationError,
)
from offline_bundle.storage.base import MAX_PARTS, MiB, choose_concurrency, choose_part_size
from offline_bundle.storage.folder import DirStore
from offline_bundle.storage.s3.settings import S3Settings
from offline_bundle.storage.s3.store import S3Store
from tests.support.fake_s3 import FakeS3, client_error


@pytest.mark.parametrize("size", [0, 1, 8 * MiB, 10 << 30, 100 << 30, 1 << 40, 5 << 40])
def test_part_size_keeps_under_the_part_limit_and_memory_bounded(size: int) -> None:
    part = choose_part_size(size)
    assert part % MiB == 0 and part >= 8 * MiB
    assert -(-size // part) <= 9_000 < MAX_PARTS
    c = choose_concurrency(part)
    assert 1 <= c <= 4
    if part <= 16 * MiB:
        assert (c + 2) * part <= 64 * MiB  # within the default budget while parts are small


def fake_store(fake: FakeS3 | None = None) -> tuple[S3Store, FakeS3]:
    fake = fake or FakeS3()
    return S3Store(S3Settings(bucket="b", endpoint="http://fake:8333"), client=fake), fake


KEY = "n/_blobs/" + "5e" * 16


def test_multipart_writer_sends_whole_parts_straight_to_the_final_key() -> None:
    store, fake = fake_store()
    data = os.urandom(20 * MiB + 12345)
    w = store.writer(KEY, estimated_bytes=len(data))
    for i in range(0, len(data), 300_000):  # chunks that straddle part boundaries
        w.write(data[i : i + 300_000])
    written = w.close()
    digest = hashlib.sha256(data).hexdigest()
    assert written.key == KEY and written.size == len(data) and written.sha256 == digest
    assert fake.contents() == {KEY: data}  # one object, under the key chosen before the first byte
    assert {args["Key"] for _op, args in fake.requests} == {KEY}  # no temporary name, no copy
    assert [op for op in fake.operations() if op != "upload_part"] == [
        "create_multipart_upload",
        "complete_multipart_upload",
    ]
    assert sorted(fake.sent_parts[KEY]) == [(1, 8 * MiB), (2, 8 * MiB), (3, 4 * MiB + 12345)]


def test_small_payload_is_one_put_under_its_final_name() -> None:
    store, fake = fake_store()
    w = store.writer(KEY, estimated_bytes=10)
    w.write(b"hello")
    written = w.close()
    assert fake.contents() == {KEY: b"hello"} and written.key == KEY
    assert fake.operations() == ["put_object"]


def test_an_aborted_multipart_writer_leaves_no_object_and_no_open_upload() -> None:
    store, fake = fake_store()
    w = store.writer(KEY, estimated_bytes=30 * MiB)
    w.write(os.urandom(9 * MiB))  # one whole part sent
    assert [u.key for u in fake.uploads.values()] == [KEY]
    w.abort()
    assert fake.contents() == {} and fake.uploads == {}


def test_a_part_the_store_refuses_is_a_store_error_and_abort_leaves_nothing() -> None:
    store, fake = fake_store()
    fake.fail("upload_part", client_error("InternalError", 500, "UploadPart"), on_call=2)
    w = store.writer(KEY, estimated_bytes=40 * MiB)
    with pytest.raises(StoreError, match="S3 answered InternalError \\(HTTP 500\\)"):
        for _ in range(5):
            w.write(os.urandom(8 * MiB))
        w.close()
    w.abort()
    assert fake.contents() == {} and fake.uploads == {}


def test_listing_follows_every_page() -> None:
    store, fake = fake_store(FakeS3(page_size=2))
    keys = [f"n/{i}/manifest.json.asc" for i in range(5)]
    for key in keys:
        store.put_bytes(key, b"x")
    store.put_bytes("other/1", b"y")
    assert [o.key for o in store.list("n/")] == keys
    assert len(fake.calls("list_objects_v2")) == 3


def test_head_of_a_missing_key_is_none_and_of_an_object_carries_its_metadata() -> None:
    store, _fake = fake_store()
    assert store.head("n/missing") is None
    store.put_bytes("n/k", b"abc", metadata={"sha256": "00"})
    info = store.head("n/k")
    assert info is not None and info.size == 3 and info.metadata == {"sha256": "00"}


def test_get_bytes_is_none_when_missing_and_refuses_more_than_its_limit() -> None:
    store, _fake = fake_store()
    assert store.get_bytes("n/missing") is None
    store.put_bytes("n/k", b"x" * 100)
    assert store.get_bytes("n/k", limit=100) == b"x" * 100
    with pytest.raises(StoreError, match="larger than 99 bytes"):
        store.get_bytes("n/k", limit=99)


def test_put_if_absent_raises_already_exists_and_keeps_the_first_object() -> None:
    store, fake = fake_store()
    store.put_bytes("n/1/manifest.json.asc", b"first", only_if_absent=True)
    with pytest.raises(AlreadyExistsError, match="n/1/manifest.json.asc already exists"):
        store.put_bytes("n/1/manifest.json.asc", b"second", only_if_absent=True)
    assert fake.contents() == {"n/1/manifest.json.asc": b"first"}


def test_put_if_absent_on_a_store_without_conditional_writes_looks_first() -> None:
    store, fake = fake_store()
    store.put_bytes("n/k", b"first")
    fake.fail("put_object", client_error("NotImplemented", 501, "PutObject"))
    with pytest.raises(AlreadyExistsError):
        store.put_bytes("n/k", b"second", only_if_absent=True)
    fake.fail("put_object", client_error("NotImplemented", 501, "PutObject"))
    store.put_bytes("n/new", b"new", only_if_absent=True)
    assert fake.contents() == {"n/k": b"first", "n/new": b"new"}


def test_a_missing_bucket_and_refused_credentials_are_typed() -> None:
    store = S3Store(S3Settings(bucket="absent"), client=FakeS3())
    with pytest.raises(NoSuchBucketError, match="bucket absent does not exist"):
        list(store.list("n/"))
    store, fake = fake_store()
    fake.fail("put_object", client_error("AccessDenied", 403, "PutObject"))
    with pytest.raises(AccessDeniedError, match="may not PutObject"):
        store.put_bytes("n/k", b"x")


def test_a_read_cut_mid_way_resumes_where_it_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    store, fake = fake_store()
    data = os.urandom(3 * MiB)
    store.put_bytes(KEY, data)
    fake.cut_bodies(after=MiB + 5, times=2)
    reader = store.open_read(KEY, len(data))
    assert reader.read(len(data) + 1) == data[:MiB]  # at most 1 MiB per read
    got = bytearray(data[:MiB])
    while chunk := reader.read(MiB):
        got += chunk
    assert bytes(got) == data
    ranges = [args["Range"] for args in fake.calls("get_object")]
    assert ranges == ["", f"bytes={MiB + 5}-", f"bytes={2 * MiB + 10}-"]


def test_a_range_is_read_from_its_start_and_the_whole_size_still_checked() -> None:
    store, _fake = fake_store()
    data = os.urandom(1000)
    store.put_bytes(KEY, data)
    assert store.open_range(KEY, 1000, 100, 300).read(-1) == data[100:300]
    with pytest.raises(VerificationError, match="1000 bytes where the signed manifest says 999"):
        store.open_range(KEY, 999, 100, 300).read(10)


def test_dir_writer_writes_the_key_only_when_closed_and_abort_leaves_nothing(tmp_path: Path) -> None:
    store = DirStore(str(tmp_path))
    w = store.writer(KEY, 0)
    w.write(b"partial")
    assert not (tmp_path / KEY).exists()
    w.abort()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_dir_store_round_trip_and_size_check(tmp_path: Path) -> None:
    store = DirStore(str(tmp_path))
    w = store.writer(KEY, 0)
    w.write(b"abc")
    written = w.close()
    assert written.key == KEY
    assert (tmp_path / written.key).read_bytes() == b"abc"
    assert store.open_read(written.key, 3).read() == b"abc"
    with pytest.raises(VerificationError, match="3 bytes where the signed manifest says 4"):
        store.open_read(written.key, 4)
    store.put_bytes("n/1/manifest.json.asc", b"x", only_if_absent=True)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        store.put_bytes("n/1/manifest.json.asc", b"y", only_if_absent=True)
    assert sorted(o.key for o in store.list("n/")) == sorted(["n/1/manifest.json.asc", written.key])


def test_pipe_passes_data_and_stops_the_writer_when_the_reader_aborts() -> None:
    pipe = ChunkPipe(max_chunks=2)
    pipe.write_chunk(b"abc")
    pipe.write_chunk(b"defg")
    assert pipe.read(2) == b"ab" and pipe.read(10) == b"c" and pipe.read(10) == b"defg"
    pipe.abort()
    with pytest.raises(PipeClosed):
        pipe.write_chunk(b"more")


def test_the_pipe_holds_at_most_eight_chunks_of_gpgs_output() -> None:
    pipe = ChunkPipe()
    for n in range(8):
        pipe.write_chunk(b"%d" % n)
    writer = threading.Thread(target=pipe.write_chunk, args=(b"8",), daemon=True)
    writer.start()
    writer.join(0.5)
    assert writer.is_alive()  # the ninth waits until the reader takes one
    assert pipe.read(1) == b"0"
    writer.join(5)
    assert not writer.is_alive()
    assert [pipe.read(1) for _ in range(8)] == [b"%d" % n for n in range(1, 9)]
