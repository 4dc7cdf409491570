"""Part sizing, the multipart writer's buffering (against a fake S3 client), the folder store, the pipe."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from offline_bundle.bundle.pipe import ChunkPipe, PipeClosed
from offline_bundle.errors import VerificationError
from offline_bundle.storage.store import (
    MAX_PARTS,
    DirStore,
    MiB,
    S3Store,
    choose_concurrency,
    choose_part_size,
)


@pytest.mark.parametrize("size", [0, 1, 8 * MiB, 10 << 30, 100 << 30, 1 << 40, 5 << 40])
def test_part_size_keeps_under_the_part_limit_and_memory_bounded(size: int) -> None:
    part = choose_part_size(size)
    assert part % MiB == 0 and part >= 8 * MiB
    assert -(-size // part) <= 9_000 < MAX_PARTS
    c = choose_concurrency(part)
    assert 1 <= c <= 4
    if part <= 16 * MiB:
        assert (c + 2) * part <= 64 * MiB  # within the default budget while parts are small


class FakeS3:
    """Records multipart calls; enough of boto3's client for the writer (it has no CopyObject to call)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.parts: dict[int, bytes] = {}
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []  # (operation, key)
        self.open_uploads: set[str] = set()

    def create_multipart_upload(self, Bucket: str, Key: str) -> dict[str, str]:  # noqa: N803
        self.calls.append(("create_multipart_upload", Key))
        self.open_uploads.add(Key)
        return {"UploadId": "u1"}

    def upload_part(self, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes) -> dict[str, str]:  # noqa: N803
        with self.lock:
            self.calls.append(("upload_part", Key))
            self.parts[PartNumber] = Body
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, Bucket: str, Key: str, UploadId: str, MultipartUpload: Any) -> None:  # noqa: N803
        self.calls.append(("complete_multipart_upload", Key))
        numbers = [p["PartNumber"] for p in MultipartUpload["Parts"]]
        assert numbers == sorted(numbers) == list(range(1, len(numbers) + 1))
        self.objects[Key] = b"".join(self.parts[n] for n in numbers)
        self.open_uploads.discard(Key)

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> None:  # noqa: N803
        self.calls.append(("abort_multipart_upload", Key))
        self.open_uploads.discard(Key)

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        from botocore.exceptions import ClientError

        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject")
        return {"ContentLength": len(self.objects[Key]), "LastModified": None}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **kw: Any) -> None:  # noqa: N803
        self.calls.append(("put_object", Key))
        self.objects[Key] = Body

    def delete_object(self, Bucket: str, Key: str) -> None:  # noqa: N803
        self.objects.pop(Key, None)


def fake_store() -> tuple[S3Store, FakeS3]:
    store = S3Store.__new__(S3Store)
    fake = FakeS3()
    store.client, store.bucket, store.memory_budget, store.description = fake, "b", 64 * MiB, "fake"
    return store, fake


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
    assert [len(fake.parts[n]) for n in sorted(fake.parts)] == [8 * MiB, 8 * MiB, 4 * MiB + 12345]
    assert fake.objects == {KEY: data}  # one object, under the key chosen before the first byte
    assert {key for _op, key in fake.calls} == {KEY}  # no temporary name, no copy
    assert [op for op, _key in fake.calls if op != "upload_part"] == [
        "create_multipart_upload",
        "complete_multipart_upload",
    ]


def test_small_payload_is_one_put_under_its_final_name() -> None:
    store, fake = fake_store()
    w = store.writer(KEY, estimated_bytes=10)
    w.write(b"hello")
    written = w.close()
    assert fake.parts == {} and fake.objects == {KEY: b"hello"} and written.key == KEY
    assert fake.calls == [("put_object", KEY)]


def test_an_aborted_multipart_writer_leaves_no_object_and_no_open_upload() -> None:
    store, fake = fake_store()
    w = store.writer(KEY, estimated_bytes=30 * MiB)
    w.write(os.urandom(9 * MiB))  # one whole part sent
    assert fake.open_uploads == {KEY}
    w.abort()
    assert fake.objects == {} and fake.open_uploads == set()


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
    with pytest.raises(Exception, match="already exists"):
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
