"""Packing plans, the pulled tar stream and the extractor's checks, on local folders."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from offline_bundle.bundle import archive
from offline_bundle.bundle.archive import TarStream, extract_part, plan_part
from offline_bundle.core.manifest import FileEntry, symlink_stays_inside
from offline_bundle.errors import ConfigError, VerificationError


def make_tree(root: Path) -> Path:
    prod = root / "prod"
    (prod / "sub" / "deep").mkdir(parents=True)
    (prod / "empty").mkdir()
    (prod / "a.sh").write_text("#!/bin/sh\necho hi\n")
    (prod / "a.sh").chmod(0o755)
    (prod / ".hidden").write_bytes(b"")
    (prod / "sub" / "naïve file.txt").write_text("x")
    (prod / "sub" / "deep" / "blob").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    os.symlink("../a.sh", prod / "sub" / "link")
    os.link(prod / "a.sh", prod / "hard")
    return prod


def pack(root: Path, pattern: str = "prod") -> tuple[bytes, list[FileEntry]]:
    plan = plan_part(root, "p", pattern, "p/")
    stream = TarStream(plan.entries)
    data = b""
    while chunk := stream.read(1 << 16):
        data += chunk
    return data, [e.to_file_entry() for e in plan.entries]


def test_round_trip_keeps_bytes_modes_links_and_empties(tmp_path: Path) -> None:
    prod = make_tree(tmp_path)
    data, files = pack(tmp_path)
    assert len(data) % tarfile.RECORDSIZE == 0
    paths = [f.path for f in files]
    assert paths == sorted(paths)
    assert {"empty", ".hidden", "sub/link", "hard", "sub/naïve file.txt"} <= set(paths)
    dest = tmp_path / "out"
    res = extract_part(io.BytesIO(data), tuple(files), str(dest), part="p")
    assert res.files == 5
    for f in files:
        src, out = prod / f.path, dest / f.path
        if f.type == "file":
            assert out.read_bytes() == src.read_bytes()
            assert out.stat().st_mode & 0o7777 == src.stat().st_mode & 0o7777
            assert int(out.stat().st_mtime) == int(src.stat().st_mtime)
        elif f.type == "symlink":
            assert os.readlink(out) == "../a.sh"
        else:
            assert out.is_dir()
    assert not (dest / "hard").is_symlink() and (dest / "hard").stat().st_nlink == 1  # a copy, not a link
    # The stream is a tar that GNU tar-compatible readers accept as well.
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert sorted(m.name for m in tf.getmembers()) == paths


def test_glob_of_files_and_collisions(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.tgz").write_text("1")
    (tmp_path / "b" / "x.tgz").write_text("2")
    (tmp_path / "a" / "y.tgz").write_text("3")
    plan = plan_part(tmp_path, "p", "a/*.tgz", "p/")
    assert [e.path for e in plan.entries] == ["x.tgz", "y.tgz"]
    with pytest.raises(ConfigError, match="land on 'x.tgz'"):
        plan_part(tmp_path, "p", "*/x.tgz", "p/")
    with pytest.raises(ConfigError, match="matches nothing"):
        plan_part(tmp_path, "p", "nothing-*", "p/")
    with pytest.raises(ConfigError, match="without '..'"):
        plan_part(tmp_path / "a", "p", "../b", "p/")


def test_refuses_links_out_of_the_part_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    os.symlink("/etc/passwd", tmp_path / "p" / "abs")
    with pytest.raises(ConfigError, match="points outside"):
        plan_part(tmp_path, "p", "p", "p/")
    os.unlink(tmp_path / "p" / "abs")
    os.symlink("../../x", tmp_path / "p" / "up")
    with pytest.raises(ConfigError, match="points outside"):
        plan_part(tmp_path, "p", "p", "p/")
    os.unlink(tmp_path / "p" / "up")
    os.mkfifo(tmp_path / "p" / "fifo")
    with pytest.raises(ConfigError, match="neither a file"):
        plan_part(tmp_path, "p", "p", "p/")


def test_refuses_non_utf8_names(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    with open(os.path.join(os.fsencode(tmp_path / "p"), b"bad\xff"), "wb"):
        pass
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        plan_part(tmp_path, "p", "p", "p/")


def test_symlink_rule() -> None:
    assert symlink_stays_inside("a/b/link", "../x")
    assert symlink_stays_inside("link", "sub/../x")
    assert not symlink_stays_inside("link", "../x")
    assert not symlink_stays_inside("a/link", "../../x")
    assert not symlink_stays_inside("link", "/abs")
    assert not symlink_stays_inside("link", "")


# ------------------------------------------------------------------------------- hand-made archives


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def reg(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    return ti, data


def entry(name: str, data: bytes, mode: int = 0o644) -> FileEntry:
    import hashlib

    return FileEntry(name, "file", mode, 0, len(data), hashlib.sha256(data).hexdigest())


def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    return ti, None


@pytest.mark.parametrize(
    ("members", "expected", "words"),
    [
        ([reg("/etc/x", b"1")], [entry("etc/x", b"1")], "unsafe path"),
        ([reg("../x", b"1")], [entry("x", b"1")], "unsafe path"),
        ([reg("a/../../x", b"1")], [entry("x", b"1")], "unsafe path"),
        ([reg("x", b"1"), reg("extra", b"2")], [entry("x", b"1")], "not in the signed manifest"),
        ([reg("x", b"1"), reg("x", b"1")], [entry("x", b"1")], "appears twice"),
        ([reg("x", b"12")], [entry("x", b"1")], "2 bytes in the archive, 1 in the manifest"),
        ([reg("x", b"2")], [entry("x", b"1")], "SHA-256 of 'x' differs"),
        ([reg("x", b"1")], [entry("x", b"1"), entry("y", b"2")], "missing from the archive"),
        ([reg("y", b"1")], [entry("z", b""), entry("y", b"1"), entry("a", b"")], r"2 file\(s\) .* e\.g\. 'a'"),
        ([special("x", tarfile.LNKTYPE, "/etc/passwd")], [entry("x", b"")], "is a hardlink in the archive"),
        ([special("x", tarfile.FIFOTYPE)], [entry("x", b"")], "is a special in the archive"),
        ([special("x", tarfile.CHRTYPE)], [entry("x", b"")], "is a special in the archive"),
        ([special("x", tarfile.SYMTYPE, "../../etc")], [entry("x", b"")], "is a symlink in the archive"),
    ],
)
def test_extractor_refuses(tmp_path: Path, members: list, expected: list[FileEntry], words: str) -> None:
    dest = tmp_path / "stage"
    with pytest.raises(VerificationError, match=words):
        extract_part(io.BytesIO(tar_of(*members)), tuple(expected), str(dest), part="p")


def test_extractor_refuses_a_path_through_a_symlink(tmp_path: Path) -> None:
    link = FileEntry("d", "symlink", 0o777, 0, target="real")
    real = FileEntry("real", "dir", 0o755, 0)
    inner = entry("d/x", b"1")
    members = [special("real", tarfile.DIRTYPE), special("d", tarfile.SYMTYPE, "real"), reg("d/x", b"1")]
    with pytest.raises(VerificationError, match="through a symlink"):
        extract_part(io.BytesIO(tar_of(*members)), (real, link, inner), str(tmp_path / "s"), part="p")


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
@pytest.mark.parametrize("already", ["file", "dir", "dangling symlink"])
def test_a_name_already_in_the_staging_folder_is_refused_and_left_alone(
    tmp_path: Path, kind: str, already: str
) -> None:
    dest = tmp_path / "stage"
    dest.mkdir()
    if already == "file":
        (dest / "x").write_bytes(b"before")
    elif already == "dir":
        (dest / "x").mkdir()
    else:
        (dest / "x").symlink_to(tmp_path / "outside")
    if kind == "file":
        members, expected = [reg("x", b"1")], (entry("x", b"1"),)
    elif kind == "dir":
        members, expected = [special("x", tarfile.DIRTYPE)], (FileEntry("x", "dir", 0o755, 0),)
    else:
        members, expected = [special("x", tarfile.SYMTYPE, "y")], (FileEntry("x", "symlink", 0o777, 0, target="y"),)
    with pytest.raises(VerificationError, match="'x' already exists in the staging folder"):
        extract_part(io.BytesIO(tar_of(*members)), expected, str(dest), part="p")
    assert not (tmp_path / "outside").exists()
    if already == "file":
        assert (dest / "x").read_bytes() == b"before"


def test_check_only_mode_writes_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path)
    data, files = pack(tmp_path)
    before = set(os.listdir(tmp_path))
    res = extract_part(io.BytesIO(data), tuple(files), None, part="p")
    assert res.files == 5 and set(os.listdir(tmp_path)) == before


# ---------------------------------------------------------------------------------------- properties

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SEGMENTS = st.sampled_from(["a", "b", "..", ".", "", "c d", "é"])
NAMES = st.lists(SEGMENTS, min_size=1, max_size=3).map("/".join) | st.sampled_from(["/abs", "/", "a/../../x"])
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE])


def member_from(name: str, kind: bytes, target: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        ti.linkname = target
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        return ti, data
    return ti, None


def honest_entry(name: str, kind: bytes, target: str, data: bytes) -> FileEntry | None:
    """What a truthful manifest would list for a member, if the member is listable at all."""
    import hashlib

    kinds = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink"}
    if kind not in kinds:
        return None
    if kind == tarfile.REGTYPE:
        return FileEntry(name, "file", 0o644, 0, len(data), hashlib.sha256(data).hexdigest())
    if kind == tarfile.DIRTYPE:
        return FileEntry(name, "dir", 0o755, 0)
    return FileEntry(name, "symlink", 0o777, 0, target=target)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(NAMES, KINDS, NAMES, st.binary(max_size=20)), min_size=1, max_size=6),
    st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_extraction_never_escapes_and_admits_only_the_manifest(
    tmp_path_factory: pytest.TempPathFactory, members: list, listed: list[bool]
) -> None:
    root = tmp_path_factory.mktemp("prop")
    dest = root / "dest"
    sentinel = root / "outside"
    sentinel.mkdir()
    expected = []
    for (name, kind, target, data), keep in zip(members, listed, strict=False):
        entry = honest_entry(name.rstrip("/") if kind == tarfile.DIRTYPE else name, kind, target, data)
        if entry is not None and keep:
            expected.append(entry)
    tar = tar_of(*(member_from(*m) for m in members))
    try:
        extract_part(io.BytesIO(tar), tuple(expected), str(dest), part="p")
    except (VerificationError, OSError):
        pass
    else:
        # Success means the archive held exactly the manifest's entries, all inside dest.
        made = {str(p.relative_to(dest)) for p in dest.rglob("*")}
        assert made == {e.path for e in expected}
        for e in expected:
            assert os.path.realpath(dest / e.path).startswith(str(dest)) or e.type == "symlink"
    assert os.listdir(sentinel) == []
    assert sorted(os.listdir(root)) in (["outside"], ["dest", "outside"])


def test_small_files_are_read_in_large_coalesced_chunks_and_large_chunks_are_not_copied(tmp_path: Path) -> None:
    from offline_bundle.bundle.archive import CHUNK, COALESCE

    root = tmp_path / "many"
    root.mkdir()
    for i in range(400):
        (root / f"f{i:03d}").write_bytes(os.urandom(4096))
    (root / "zz-big").write_bytes(os.urandom(3 * CHUNK))
    plan = plan_part(tmp_path, "p", "many", "p/")
    stream = TarStream(plan.entries)
    sizes = []
    data = bytearray()
    while chunk := stream.read(CHUNK):
        sizes.append(len(chunk))
        data += chunk
    # 400 small files (1.8 MiB of tar) arrive in a handful of reads, not ~800; the big file's 1 MiB
    # chunks arrive as they were generated.
    small_reads = [s for s in sizes[:-4] if s < COALESCE]
    assert len(sizes) < 20 and len(small_reads) <= 1, sizes
    assert sizes.count(CHUNK) >= 3
    files = [e.to_file_entry() for e in plan.entries]
    res = extract_part(io.BytesIO(bytes(data)), tuple(files), str(tmp_path / "out"), part="p")
    assert res.files == 401
    assert (tmp_path / "out" / "f399").read_bytes() == (root / "f399").read_bytes()


_names = st.text(alphabet=st.sampled_from("abz09._- /éü"), min_size=1, max_size=130).filter(
    lambda s: not s.startswith("/") and "//" not in s and not s.endswith("/")
)


@settings(max_examples=300, deadline=None)
@given(
    name=_names,
    kind=st.sampled_from(["file", "dir", "symlink"]),
    mode=st.integers(0, 0o7777),
    size=st.one_of(st.integers(0, 5000), st.integers(8**11 - 2, 8**11 + 2)),
    mtime=st.one_of(st.integers(0, 2**33), st.integers(8**11 - 2, 8**11 + 2)),
    target=_names,
)
def test_the_fast_tar_header_equals_tarfiles(
    name: str, kind: str, mode: int, size: int, mtime: int, target: str
) -> None:
    from offline_bundle.bundle.archive import Entry, _header, _tarinfo

    e = Entry(
        name,
        "/nowhere",
        kind,
        mode,
        mtime,
        size=size if kind == "file" else 0,
        target=target if kind == "symlink" else None,
    )
    assert _header(e) == _tarinfo(e).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class _Chunks(io.RawIOBase):
    """A stream handing out the chunks it was given, whole when asked for as much (as ChunkPipe does)."""

    def __init__(self, data: bytes, size: int) -> None:
        self.chunks = [data[i : i + size] for i in range(0, len(data), size)]
        self.handed: list[bytes] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.chunks:
            return b""
        chunk = self.chunks[0]
        out, rest = (chunk, b"") if size < 0 or size >= len(chunk) else (chunk[:size], chunk[size:])
        self.chunks = [rest, *self.chunks[1:]] if rest else self.chunks[1:]
        self.handed.append(out)
        return out


def test_large_members_are_read_past_tarfiles_buffer_and_every_member_still_lands(tmp_path: Path) -> None:
    """Large files come straight from the stream (the very chunks, not copies of them); what follows
    them, headers and padding and small files, is read where tarfile expects it."""
    prod = make_tree(tmp_path)
    (prod / "sub" / "zz-small").write_bytes(b"after the blob")  # a member after the large one
    data, files = pack(tmp_path)
    raw = _Chunks(data, 1 << 20)
    dest = tmp_path / "out"
    res = extract_part(raw, tuple(files), str(dest), part="p")
    assert res.files == 6
    for f in files:
        if f.type == "file":
            assert (dest / f.path).read_bytes() == (prod / f.path).read_bytes()
    # tarfile's own reader asks for its buffer size (64 KiB) at a time; whole 1 MiB chunks were
    # handed out only because the blob's bytes were asked for past it.
    assert max(len(c) for c in raw.handed) == 1 << 20


def test_the_member_reader_serves_tarfiles_buffer_first_and_keeps_its_position() -> None:
    buf_then_raw = _Chunks(b"R" * 10, 4)

    class FakeTarStream:
        comptype = "tar"
        buf = b"BBB"
        pos = 100

    ts = FakeTarStream()
    read = archive._member_reader(ts, buf_then_raw)
    assert read(2) == b"BB" and ts.buf == b"B" and ts.pos == 102
    assert read(5) == b"B" and ts.buf == b"" and ts.pos == 103
    assert read(5) == b"RRRR" and ts.pos == 107
    # Anything but tarfile's plain stream is read as tarfile would read it (its own read, not raw's).
    assert archive._member_reader(io.BytesIO(b"xyz"), buf_then_raw)(2) == b"xy"


def test_a_planned_entry_names_its_source_and_node_as_before(tmp_path: Path) -> None:
    (tmp_path / "app" / "bin").mkdir(parents=True)
    (tmp_path / "app" / "bin" / "run").write_text("x")
    (tmp_path / "top.txt").write_text("y")
    (tmp_path / "app" / "a.txt").write_text("z")
    by_path = {e.path: e for e in plan_part(tmp_path, "p", "app", "p/").entries}
    run = by_path["bin/run"]
    st = os.lstat(tmp_path / "app" / "bin" / "run")
    assert run.source == "app/bin/run" and run.ident == (st.st_dev, st.st_ino)
    assert by_path["bin"].source == "app/bin" and by_path["bin"].type == "dir"
    (top,) = plan_part(tmp_path, "p", "top.txt", "p/").entries
    assert (top.path, top.source) == ("top.txt", "top.txt")
    (leaf,) = plan_part(tmp_path, "p", "app/*.txt", "p/").entries
    assert (leaf.path, leaf.source) == ("a.txt", "app/a.txt")
    # A mode or a device repeated entry after entry is one int object, not one each.
    assert by_path["bin/run"].dev is by_path["a.txt"].dev and by_path["bin/run"].mode is by_path["a.txt"].mode


def test_a_spending_stream_gives_the_same_tar_and_file_entries_and_keeps_no_entry(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    data, files = pack(tmp_path)
    plan = plan_part(tmp_path, "p", "prod", "p/")
    assert root.exists() and len(plan.entries) == len(files)
    stream = TarStream(plan.entries, spend=True)
    spent = b""
    while chunk := stream.read(1 << 16):
        spent += chunk
    assert spent == data and stream.files == files
    assert plan.entries == []
