"""Several parts at once: a put and a get run parts side by side, and one failure stops them all.

In-process against the real SeaweedFS and real gpg, so the number of parts in flight can be set
(the Concourse scripts use the default, one per CPU up to four) and watched: the store is wrapped
to count the payload writers and readers open at the same time.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.sides import Sides

pytestmark = pytest.mark.integration

MiB = 1 << 20
PARTS = ("a", "b", "c")


def three_parts(root: Path, size: int) -> Path:
    for name in PARTS:
        (root / name / "sub").mkdir(parents=True)
        with open(root / name / "data.bin", "wb") as f:
            f.write(os.urandom(size))
        (root / name / "sub" / "notes.txt").write_text(f"part {name}")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Watch:
    """How many payload writers or readers are open at once, and how each writer ended."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.most = 0
        self.started: list[str] = []  # payload keys, in the order their writers opened
        self.ended: dict[str, str] = {}  # payload key -> "closed" | "aborted"

    def enter(self, key: str | None = None) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
            if key is not None:
                self.started.append(key)

    def leave(self, key: str | None = None, how: str = "") -> None:
        with self.lock:
            self.open -= 1
            if key is not None:
                self.ended[key] = how


def watched_store(source: Any, watch: Watch, *, fail_part_at: int | None = None, budget: int = 256 * MiB) -> Any:
    """A real S3 store whose writers and readers report to ``watch``; the second writer may fail mid-way."""
    from offline_bundle.errors import StoreError
    from offline_bundle.storage.s3.store import S3Store

    class WatchedStore(S3Store):
        writers = 0

        def writer(self, key: str, estimated_bytes: int, on_bytes: Any = None, **kw: Any) -> Any:
            inner = super().writer(key, estimated_bytes, on_bytes, **kw)
            with watch.lock:
                WatchedStore.writers += 1
                failing = fail_part_at is not None and WatchedStore.writers == 2
            watch.enter(key)
            write, close, abort = inner.write, inner.close, inner.abort

            def write_(chunk: bytes) -> None:
                if failing and inner.size > fail_part_at:
                    raise StoreError("the link to the store went down")
                write(chunk)

            def close_() -> Any:
                try:
                    return close()
                finally:
                    watch.leave(key, "closed")

            def abort_() -> None:
                watch.leave(key, "aborted")
                abort()

            inner.write, inner.close, inner.abort = write_, close_, abort_
            return inner

        def open_read(self, key: str, size: int, on_bytes: Any = None) -> Any:
            raw = super().open_read(key, size, on_bytes)
            watch.enter()
            close = raw.close

            def close_() -> None:
                if not raw.closed:
                    watch.leave()
                close()

            raw.close = close_
            return raw

    return WatchedStore.from_source(source, memory_budget=budget)


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_three_part_bundle_round_trips_one_or_three_parts_at_a_time(
    sides: Sides, tmp_path: Path, parallel: int
) -> None:
    from offline_bundle.bundle.pack import Packer
    from offline_bundle.bundle.unpack import Unpacker
    from offline_bundle.core.config import BuildInfo, InParams, OutParams, PartSpec, parse_source

    build = three_parts(tmp_path / "build", 20 * MiB + 1)  # three 8 MiB multipart parts each
    put_source, get_source = parse_source(sides.put_source), parse_source(sides.get_source)
    params = OutParams(parts=tuple(PartSpec(n, n, f"{n}/") for n in PARTS), version="1")
    up, down = Watch(), Watch()
    lines: list[str] = []
    Packer(put_source, watched_store(put_source, up), lines.append, parallel=parallel).put(
        params, str(build), BuildInfo()
    )
    assert up.most == parallel and sorted(up.ended.values()) == ["closed"] * 3
    assert (f"uploading 3 parts, {parallel} at a time" in lines) == (parallel > 1)

    dest = tmp_path / "dest"
    result = Unpacker(get_source, watched_store(get_source, down), lines.append, parallel=parallel).get(
        "1", InParams(), str(dest)
    )
    assert down.most == parallel and down.open == 0
    assert result.parts == PARTS and result.files == 6
    for name in PARTS:
        assert tree(dest / name) == tree(build / name)
    assert len((dest / "SHA256SUMS").read_text().splitlines()) == 6


def test_the_memory_budget_bounds_the_parts_in_flight(sides: Sides, tmp_path: Path) -> None:
    """Each part in flight needs three 8 MiB buffers: a 64 MiB budget holds two parts, not three."""
    from offline_bundle.bundle.pack import Packer
    from offline_bundle.core.config import BuildInfo, OutParams, PartSpec, parse_source

    build = three_parts(tmp_path / "build", 9 * MiB)
    source = parse_source(sides.put_source)
    watch = Watch()
    lines: list[str] = []
    params = OutParams(parts=tuple(PartSpec(n, n, f"{n}/") for n in PARTS), version="1")
    Packer(source, watched_store(source, watch, budget=64 * MiB), lines.append, parallel=4).put(
        params, str(build), BuildInfo()
    )
    assert "uploading 3 parts, 2 at a time" in lines and watch.most == 2


def test_a_part_that_fails_stops_the_others_and_the_put_leaves_nothing(sides: Sides, tmp_path: Path) -> None:
    from offline_bundle.bundle.pack import Packer
    from offline_bundle.core.config import BuildInfo, OutParams, PartSpec, parse_source
    from offline_bundle.errors import StoreError

    build = three_parts(tmp_path / "build", 48 * MiB)
    source = parse_source(sides.put_source)
    watch = Watch()
    params = OutParams(parts=tuple(PartSpec(n, n, f"{n}/") for n in PARTS), version="1")
    packer = Packer(source, watched_store(source, watch, fail_part_at=9 * MiB), lambda _m: None, parallel=3)
    with pytest.raises(StoreError, match="went down"):  # the failing part's error, not the others' stop
        packer.put(params, str(build), BuildInfo())
    assert watch.open == 0 and len(watch.ended) == 3
    failed = watch.started[1]
    assert watch.ended[failed] == "aborted"
    assert "aborted" in [watch.ended[k] for k in watch.started if k != failed]  # stopped mid-way, not finished
    client = sides.client()
    assert client.list_objects_v2(Bucket=sides.bucket).get("Contents", []) == []
    assert client.list_multipart_uploads(Bucket=sides.bucket).get("Uploads", []) == []


def test_a_part_that_fails_verification_stops_the_others_and_the_get_leaves_nothing(
    sides: Sides, tmp_path: Path
) -> None:
    from offline_bundle.bundle.pack import Packer
    from offline_bundle.bundle.unpack import Unpacker
    from offline_bundle.core.config import BuildInfo, InParams, OutParams, PartSpec, parse_source
    from offline_bundle.errors import VerificationError

    build = three_parts(tmp_path / "build", 24 * MiB)
    put_source, get_source = parse_source(sides.put_source), parse_source(sides.get_source)
    params = OutParams(parts=tuple(PartSpec(n, n, f"{n}/") for n in PARTS), version="1")
    manifest = Packer(put_source, watched_store(put_source, Watch()), lambda _m: None, parallel=1).put(
        params, str(build), BuildInfo()
    )
    client = sides.client()
    key = "demo/" + manifest.manifest.part("a").payload.key
    data = bytearray(client.get_object(Bucket=sides.bucket, Key=key)["Body"].read())
    data[5 * MiB] ^= 1  # early in part a: the other two are still streaming when it fails
    client.put_object(Bucket=sides.bucket, Key=key, Body=bytes(data))

    dest = tmp_path / "dest"
    watch = Watch()
    with pytest.raises(VerificationError, match="part a"):
        Unpacker(get_source, watched_store(get_source, watch), lambda _m: None, parallel=3).get(
            "1", InParams(), str(dest)
        )
    assert watch.most == 3 and watch.open == 0
    assert os.listdir(dest) == []  # no staging folder, nothing of any part
