"""Media pieces without servers: sizes, the index, export from a folder store, resuming, the medium as a store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path

import pytest

from offline_bundle.bundle.commit import payload_object_key, read_commit
from offline_bundle.bundle.pack import Packer
from offline_bundle.bundle.unpack import Unpacker
from offline_bundle.core.config import BuildInfo, InParams, OutParams, PartSpec, Source
from offline_bundle.errors import BundleError, ConfigError, VerificationError
from offline_bundle.storage.folder import DirStore
from offline_bundle.transfer.media import Exporter
from offline_bundle.transfer.pieces import (
    INDEX_FORMAT,
    MediumStore,
    MiB,
    Piece,
    PieceIndex,
    check_piece_size,
    index_path,
    load_index,
    parse_index,
    parse_size,
    piece_plan,
    pieces_dir,
)
from offline_bundle.transfer.verified_upload import BlockChanged, VerifiedBody, survey

PIECE = 5 * MiB
SOURCE = Source(bucket="local-folder", name="demo", allow_unencrypted=True, allow_unsigned=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [("4000MiB", 4000 * MiB), ("64M", 64 * MiB), ("1G", 1 << 30), ("5GiB", 5 << 30), ("5242880", 5 * MiB)],
)
def test_sizes_are_binary(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "4 GB please", "-1M", "1.5G", "MiB"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--piece-size"):
        parse_size(text)


def test_a_piece_must_fit_one_multipart_part() -> None:
    assert check_piece_size(5 * MiB) == 5 * MiB
    for bad in (5 * MiB - 1, (5 << 30) + 1):
        with pytest.raises(ConfigError, match="between 5 MiB and 5 GiB"):
            check_piece_size(bad)


@pytest.mark.parametrize("size", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 7])
def test_the_plan_covers_every_byte_once(size: int) -> None:
    plan = piece_plan(size, PIECE)
    assert sum(n for _, n in plan) == size
    assert all(off == i * PIECE for i, (off, _) in enumerate(plan))
    assert all(0 < n <= PIECE for _, n in plan)


def test_the_index_round_trips_and_is_parsed_strictly() -> None:
    idx = PieceIndex("a" * 64, 10, PIECE, (Piece(1, 0, 10, "b" * 64),), complete=True)
    assert parse_index(idx.to_json_bytes(), "i") == idx
    doc = json.loads(idx.to_json_bytes())
    assert doc["format"] == INDEX_FORMAT and doc["pieces"][0]["name"] == "00001"
    for broken in (
        {**doc, "format": "other/1"},
        {**doc, "payload": {"sha256": "nothex", "size": 10}},
        {**doc, "pieces": [{**doc["pieces"][0], "name": "../x"}]},
        {**doc, "pieces": [doc["pieces"][0], doc["pieces"][0]]},
        {**doc, "complete": "yes"},
    ):
        with pytest.raises(VerificationError, match="malformed"):
            parse_index(json.dumps(broken).encode(), "i")
    with pytest.raises(VerificationError, match="malformed"):
        parse_index(b"\xff", "i")


# ----------------------------------------------------------------------------------- export on folders


def _random_file(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))


def _pack(store_dir: Path, build: Path, version: str) -> None:
    params = OutParams(parts=(PartSpec("big", "big", "big/"), PartSpec("small", "small", "small/")), version=version)
    Packer(SOURCE, DirStore(str(store_dir)), lambda _m: None).put(params, str(build), BuildInfo())


@pytest.fixture
def folder_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A folder store holding version 1.0.0 (a 12 MiB part and a small one), unsigned and unencrypted."""
    build = tmp_path / "build"
    _random_file(build / "big" / "data.bin", 12 * MiB + 3, seed=1)
    _random_file(build / "small" / "a.txt", 100, seed=2)
    store = tmp_path / "store"
    _pack(store, build, "1.0.0")
    return store, build


def _export(store: Path, medium: Path, **kw: str) -> tuple[object, list[str]]:
    lines: list[str] = []
    result = Exporter(SOURCE, DirStore(str(store)), str(medium), lines.append, piece_size=PIECE).export(**kw)
    return result, lines


def test_export_writes_pieces_an_index_and_the_commit_object_last(
    folder_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = folder_bundle
    medium = tmp_path / "medium"
    result, lines = _export(store, medium)
    trusted = read_commit(SOURCE, DirStore(str(store)), "1.0.0")
    big = trusted.manifest.part("big").payload
    big_key = payload_object_key(SOURCE, big)  # the store's and the medium's key
    folder = Path(pieces_dir(str(medium), big_key))
    names = sorted(os.listdir(folder))
    assert names == ["00001", "00002", "00003", "SHA256SUMS"]
    joined = b"".join((folder / n).read_bytes() for n in names[:3])
    assert hashlib.sha256(joined).hexdigest() == big.sha256 and len(joined) == big.size
    idx = load_index(str(medium), big_key)
    assert idx is not None and idx.complete
    assert [p.size for p in idx.pieces] == [PIECE, PIECE, big.size - 2 * PIECE]
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert sums[0] == f"{hashlib.sha256(joined[:PIECE]).hexdigest()}  00001"
    assert (medium / "demo" / "1.0.0" / "manifest.json.asc").read_bytes() == trusted.commit_bytes
    assert not [n for n in names if n.startswith(".tmp-")]
    assert result.pieces_written == 4 and result.pieces_kept == 0  # type: ignore[attr-defined]
    assert any(ln.startswith("record: export of demo 1.0.0 by ") and str(medium) in ln for ln in lines)
    assert [p.name for p in (medium / "demo" / "_records").iterdir()][0].endswith(".json")


def test_the_medium_reads_as_a_store_and_names_a_damaged_piece(
    folder_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = folder_bundle
    medium = tmp_path / "medium"
    _export(store, medium)
    ms = MediumStore(str(medium))
    result = Unpacker(SOURCE, ms, lambda _m: None).get("1.0.0", InParams(), str(tmp_path / "out"))
    assert result.parts == ("big", "small")
    assert (tmp_path / "out" / "big" / "data.bin").stat().st_size == 12 * MiB + 3
    big = read_commit(SOURCE, ms, "1.0.0").manifest.part("big").payload
    big_key = payload_object_key(SOURCE, big)
    listed = {o.key: o.size for o in ms.list("demo/_blobs/")}
    assert listed[big_key] == big.size and not [k for k in listed if ".pieces/" in k or k.endswith(".json")]
    assert ms.head(big_key).size == big.size  # type: ignore[union-attr]

    piece = Path(pieces_dir(str(medium), big_key)) / "00002"
    data = bytearray(piece.read_bytes())
    data[100] ^= 1
    piece.write_bytes(bytes(data))
    reader = ms.open_read(big_key, big.size)
    with pytest.raises(VerificationError, match="piece 00002"):
        while reader.read(MiB):
            pass
    ms.delete(big_key)
    assert not os.path.exists(index_path(str(medium), big_key)) and not piece.parent.exists()


def test_a_rerun_keeps_verified_pieces_and_rewrites_only_missing_or_damaged_ones(
    folder_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = folder_bundle
    medium = tmp_path / "medium"
    _export(store, medium)
    big = read_commit(SOURCE, DirStore(str(store)), "1.0.0").manifest.part("big").payload
    big_key = payload_object_key(SOURCE, big)
    folder = Path(pieces_dir(str(medium), big_key))
    before = {n: (folder / n).stat() for n in ("00001", "00002", "00003")}
    (folder / "00002").unlink()
    with open(folder / "00003", "r+b") as f:
        f.write(b"X")
    (folder / ".tmp-00004-deadbeef").write_bytes(b"left by a killed run")
    (medium / "demo" / "1.0.0" / "manifest.json.asc").unlink()

    result, lines = _export(store, medium)
    assert result.pieces_written == 2 and result.pieces_kept == 2  # type: ignore[attr-defined]
    after = (folder / "00001").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before["00001"].st_ino, before["00001"].st_mtime_ns)
    assert any("piece 00003 on the medium does not match its index" in ln for ln in lines)
    assert not (folder / ".tmp-00004-deadbeef").exists()
    joined = b"".join((folder / n).read_bytes() for n in ("00001", "00002", "00003"))
    assert hashlib.sha256(joined).hexdigest() == big.sha256
    assert (medium / "demo" / "1.0.0" / "manifest.json.asc").exists()


def test_export_refuses_before_writing_when_the_medium_is_too_small(
    folder_bundle: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = folder_bundle
    medium = tmp_path / "medium"
    import offline_bundle.transfer.media as media

    real = media.shutil.disk_usage
    monkeypatch.setattr(media.shutil, "disk_usage", lambda p: real(p)._replace(free=10 * MiB))
    with pytest.raises(BundleError, match="not enough room on .*nothing was written"):
        _export(store, medium)
    assert [p for p in medium.rglob("*")] == []


def test_since_leaves_out_what_the_older_version_references(folder_bundle: tuple[Path, Path], tmp_path: Path) -> None:
    store, build = folder_bundle
    (build / "small" / "a.txt").write_text("changed")
    _pack(store, build, "1.0.1")
    medium = tmp_path / "medium"
    result, _ = _export(store, medium, version="1.0.1", since="1.0.0")
    m = read_commit(SOURCE, DirStore(str(store)), "1.0.1").manifest
    assert result.exported == (m.part("small").payload.key,)  # type: ignore[attr-defined]
    assert result.skipped == (m.part("big").payload.key,)  # type: ignore[attr-defined]
    assert not os.path.exists(pieces_dir(str(medium), payload_object_key(SOURCE, m.part("big").payload)))
    with pytest.raises(BundleError, match="is the version being exported"):
        _export(store, medium, version="1.0.1", since="1.0.1")


def test_a_different_piece_size_rewrites_the_payload(folder_bundle: tuple[Path, Path], tmp_path: Path) -> None:
    store, _ = folder_bundle
    medium = tmp_path / "medium"
    _export(store, medium)
    lines: list[str] = []
    Exporter(SOURCE, DirStore(str(store)), str(medium), lines.append, piece_size=8 * MiB).export()
    big = read_commit(SOURCE, DirStore(str(store)), "1.0.0").manifest.part("big").payload
    big_key = payload_object_key(SOURCE, big)
    assert sorted(os.listdir(pieces_dir(str(medium), big_key))) == ["00001", "00002", "SHA256SUMS"]
    assert any("in other pieces" in ln for ln in lines)


# ------------------------------------------------------------------------------------- the verified body


def test_the_verified_body_hands_over_only_blocks_that_equal_the_first_read() -> None:
    data = os.urandom(3 * MiB + 5)
    before = hashlib.sha256(b"earlier pieces")
    whole = before.copy()
    seen = survey(io.BytesIO(data), len(data), whole, "piece 00001")
    assert seen.sha256 == hashlib.sha256(data).hexdigest() and seen.md5 == hashlib.md5(data).hexdigest()
    assert len(seen.blocks) == 4 and whole.hexdigest() == hashlib.sha256(b"earlier pieces" + data).hexdigest()

    body = VerifiedBody(io.BytesIO(data), len(data), seen, "piece 00001")
    assert body.read(1000) == data[:1000]
    body.seek(0)  # botocore rewinds after signing, and before a retry
    assert body.seek(0, io.SEEK_END) == len(data) and body.read() == b""
    body.seek(MiB - 10)
    assert body.read(20) == data[MiB - 10 : MiB]  # a read stops at the end of its block
    body.seek(0)
    assert b"".join(iter(lambda: body.read(70_000), b"")) == data

    changed = bytearray(data)
    changed[2 * MiB + 7] ^= 1
    body = VerifiedBody(io.BytesIO(bytes(changed)), len(data), seen, "piece 00001")
    got = body.read(MiB) + body.read(MiB)  # the first two blocks are unchanged and handed over
    assert got == data[: 2 * MiB]
    with pytest.raises(BlockChanged, match="changed between its check and its upload"):
        body.read(10)  # the third block is refused before a byte of it is handed over

    short = VerifiedBody(io.BytesIO(data[:-1]), len(data), seen, "piece 00001")
    short.seek(3 * MiB)
    with pytest.raises(BlockChanged, match="short"):
        short.read()


def test_a_survey_refuses_a_stream_of_another_length() -> None:
    with pytest.raises(VerificationError, match="short"):
        survey(io.BytesIO(b"x" * 10), 11, hashlib.sha256(), "piece 00001")
    with pytest.raises(VerificationError, match="longer"):
        survey(io.BytesIO(b"x" * 12), 11, hashlib.sha256(), "piece 00001")


def test_a_file_window_is_a_seekable_stream_of_its_own(tmp_path: Path) -> None:
    from offline_bundle.transfer.pieces import FileWindow

    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 4)
    with FileWindow(open(path, "rb"), 300, 100) as w:  # noqa: SIM115 - the window closes it
        assert w.read(10) == bytes(range(44, 54))
        w.seek(0)
        assert w.read() == (bytes(range(256)) * 4)[300:400] and w.read(5) == b""
        assert w.seek(0, io.SEEK_END) == 100 and w.tell() == 100
