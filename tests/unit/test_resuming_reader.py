"""The download body that resumes by range: many cuts with progress between them complete; a link
that stays broken ends the download after a bounded number of resumes in a row."""

from __future__ import annotations

import pytest

from offline_bundle.errors import StoreError
from offline_bundle.storage.s3 import reader as reader_module
from offline_bundle.storage.s3.reader import ResumingReader
from offline_bundle.storage.s3.settings import S3Settings
from offline_bundle.storage.s3.store import S3Store
from tests.support.fake_s3 import FakeS3


def reader_over(data: bytes, cut_after: int, cuts: int) -> tuple[ResumingReader, FakeS3]:
    """A reader of one object whose GETs are cut after ``cut_after`` bytes (0: at once), ``cuts`` times."""
    fake = FakeS3()
    store = S3Store(S3Settings(bucket="b"), client=fake)
    store.put_bytes("k", data)
    fake.cut_bodies(after=cut_after, times=cuts)
    reader = store.open_read("k", len(data))
    assert isinstance(reader, ResumingReader)
    return reader, fake


def get_ranges(fake: FakeS3) -> list[str]:
    return [args["Range"] for args in fake.calls("get_object")]


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    monkeypatch.setattr(reader_module, "max_attempts", lambda: 5)
    return slept


def read_all(r: ResumingReader) -> bytes:
    out = bytearray()
    while chunk := r.read(1 << 16):
        out += chunk
    return bytes(out)


def test_twenty_cuts_with_progress_between_them_complete_and_resume_where_they_stopped(no_sleep: list[float]) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    reader, fake = reader_over(data, cut_after=40_000, cuts=20)
    assert read_all(reader) == data
    assert len(get_ranges(fake)) == 21
    starts = [int(r.removeprefix("bytes=").split("-")[0]) for r in get_ranges(fake)[1:] if r]
    assert starts == [40_000 * i for i in range(1, 21)], "each resume starts at the first byte not yet read"
    assert no_sleep == [1] * 20, "after progress the back-off starts again from its shortest pause"


def test_a_link_that_stays_broken_ends_the_download_after_bounded_resumes(no_sleep: list[float]) -> None:
    reader, _fake = reader_over(b"x" * 100_000, cut_after=0, cuts=1000)
    with pytest.raises(StoreError):
        read_all(reader)
    assert no_sleep == [1, 2, 4, 8, 16], "resumes in a row without a byte back off, and stop after max_attempts"
