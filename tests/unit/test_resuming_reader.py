"""The download body that resumes by range: many cuts with progress between them complete; a link
that stays broken ends the download after a bounded number of resumes in a row."""

from __future__ import annotations

import io
from typing import Any

import pytest

from offline_bundle.errors import StoreError
from offline_bundle.storage import store as store_module
from offline_bundle.storage.store import S3Store, _ResumingReader


class CutBody(io.RawIOBase):
    """A response body that delivers ``allow`` bytes, then fails as a reset connection does."""

    def __init__(self, data: bytes, allow: int) -> None:
        self._data, self._allow = data, allow

    def read(self, size: int = -1) -> bytes:
        if not self._data:
            return b""
        if self._allow <= 0:
            raise ConnectionResetError("connection reset by peer")
        n = min(size, self._allow, len(self._data))
        out, self._data = self._data[:n], self._data[n:]
        self._allow -= n
        return out


class CuttingS3:
    """Serves one object; every GET is cut after ``cut_after`` bytes (0: at once) until ``cuts`` ran out."""

    def __init__(self, data: bytes, cut_after: int, cuts: int) -> None:
        self.data, self.cut_after, self.cuts = data, cut_after, cuts
        self.ranges: list[str | None] = []

    def get_object(self, Bucket: str, Key: str, Range: str | None = None, IfMatch: str | None = None) -> dict[str, Any]:  # noqa: N803
        self.ranges.append(Range)
        start = int(Range.removeprefix("bytes=").split("-")[0]) if Range else 0
        body = self.data[start:]
        allow = self.cut_after if self.cuts > 0 else len(body)
        self.cuts -= 1
        reply: dict[str, Any] = {"ContentLength": len(body), "ETag": '"e"', "Body": CutBody(body, allow)}
        if Range:
            reply["ContentRange"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        return reply


def reader_over(fake: CuttingS3) -> _ResumingReader:
    store = S3Store.__new__(S3Store)
    store.client, store.bucket, store.description = fake, "b", "fake"  # type: ignore[attr-defined]
    return _ResumingReader(store, "k", len(fake.data), None)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    monkeypatch.setattr(store_module, "max_attempts", lambda: 5)
    return slept


def read_all(r: _ResumingReader) -> bytes:
    out = bytearray()
    while chunk := r.read(1 << 16):
        out += chunk
    return bytes(out)


def test_twenty_cuts_with_progress_between_them_complete_and_resume_where_they_stopped(no_sleep: list[float]) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    fake = CuttingS3(data, cut_after=40_000, cuts=20)
    assert read_all(reader_over(fake)) == data
    assert len(fake.ranges) == 21
    starts = [int(r.removeprefix("bytes=").split("-")[0]) for r in fake.ranges[1:] if r]
    assert starts == [40_000 * i for i in range(1, 21)], "each resume starts at the first byte not yet read"
    assert no_sleep == [1] * 20, "after progress the back-off starts again from its shortest pause"


def test_a_link_that_stays_broken_ends_the_download_after_bounded_resumes(no_sleep: list[float]) -> None:
    fake = CuttingS3(b"x" * 100_000, cut_after=0, cuts=1000)
    with pytest.raises(StoreError):
        read_all(reader_over(fake))
    assert no_sleep == [1, 2, 4, 8, 16], "resumes in a row without a byte back off, and stop after max_attempts"
