"""Parts as tar streams: planning what to pack, producing the tar on demand, extracting it safely.

The tar is produced by pulling (``TarStream.read``) instead of ``tarfile`` pushing into a file, so
it can feed GnuPG or the uploader directly: no copy on disk, each byte read once and hashed once.
Extraction trusts nothing in the tar; every entry must be announced by the signed manifest.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from offline_bundle.core.confined import BuildDir
from offline_bundle.core.fields import carry_fields
from offline_bundle.core.manifest import (
    MAX_LINK_HOPS,
    PROBE_BYTES,
    FileEntry,
    check_links,
    check_member_path,
    resolve_links,
    symlink_stays_inside,
)
from offline_bundle.errors import ConfigError, VerificationError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


@dataclass(slots=True)
class Entry:
    """One node to pack: its path in the part, where it is below the build folder, what the manifest will say.

    ``source`` (``folder/path``, or ``path`` when ``folder`` is None) is relative to ``root`` (the
    build folder) and is only ever opened through ``confined.BuildDir``; ``ident`` (``dev``, ``ino``)
    is the node that was planned, so a file swapped for another between planning and reading is
    noticed. Both are made when asked for: held for each of 100,000 entries, the source strings and
    the (device, inode) tuples took 17 MB; the folder is one string for all the entries of a match.
    """

    path: str
    folder: str | None
    type: str
    mode: int
    mtime: int
    size: int = 0
    target: str | None = None
    sha256: str | None = None
    probe: str | None = None
    root: str = ""
    dev: int = 0
    ino: int | None = None

    @property
    def source(self) -> str:
        return self.path if self.folder is None else f"{self.folder}/{self.path}"

    @property
    def ident(self) -> tuple[int, int] | None:
        return None if self.ino is None else (self.dev, self.ino)

    def to_file_entry(self) -> FileEntry:
        return carry_fields(FileEntry, self)


_SHARED_INTS: dict[int, int] = {}


def _shared(value: int) -> int:
    """One int object for a value that entry after entry repeats (a mode, a device), not one each."""
    return _SHARED_INTS.setdefault(value, value)


@dataclass
class PartPlan:
    name: str
    destination: str
    entries: list[Entry] = field(default_factory=list)
    hashes: dict[str, str] | None = None  # local files' SHA-256, computed only when a comparison needs them
    probes: dict[str, str] = field(default_factory=dict)  # local files' probes (see manifest.PROBE_BYTES)

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def estimated_tar_size(self) -> int:
        """Upper bound of the tar size: header (with room for a PAX record) plus padded data per entry."""
        total = 2 * BLOCK
        for e in self.entries:
            total += 3 * BLOCK + (e.size + BLOCK - 1) // BLOCK * BLOCK
        return (total + RECORD - 1) // RECORD * RECORD


def _utf8(name: str, where: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{where}: file name {name.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8"
        ) from None
    return name


def _entry_for(root: BuildDir, path_in_part: str, folder: str | None, st: os.stat_result, part: str) -> Entry:
    mode = _shared(stat.S_IMODE(st.st_mode))
    mtime = int(st.st_mtime)
    where = f"part {part}"
    try:
        check_member_path(path_in_part, "path")
    except VerificationError as e:
        raise ConfigError(f"{where}: {e}; a get would refuse it: rename it") from None
    r, dev, ino = root.path, _shared(st.st_dev), st.st_ino
    if stat.S_ISLNK(st.st_mode):
        source = path_in_part if folder is None else f"{folder}/{path_in_part}"
        target = _utf8(root.readlink(source, where), where)
        if not symlink_stays_inside(path_in_part, target):
            raise ConfigError(f"{where}: symlink {path_in_part!r} -> {target!r} points outside the part")
        return Entry(path_in_part, folder, "symlink", 0o777, mtime, target=target, root=r, dev=dev, ino=ino)
    if stat.S_ISDIR(st.st_mode):
        return Entry(path_in_part, folder, "dir", mode, mtime, root=r, dev=dev, ino=ino)
    if stat.S_ISREG(st.st_mode):
        return Entry(path_in_part, folder, "file", mode, mtime, size=st.st_size, root=r, dev=dev, ino=ino)
    raise ConfigError(f"{where}: {path_in_part!r} is neither a file, a folder nor a symlink; refused")


def _check_part_links(entries: dict[str, Entry], part: str) -> None:
    """Every link must lead to a node the part holds (or its root), following the part's own links.

    A get checks the same (``manifest.check_links``) except for links that dangle inside the part:
    those it accepts from older writers, but packing one is almost always a mistake (a link to a
    file that was left out), so it is refused here.
    """
    links = {p: e.target or "" for p, e in entries.items() if e.type == "symlink"}
    if not links:
        return
    for path, where in resolve_links(links).items():
        if where is None:
            raise ConfigError(
                f"part {part}: symlink {path!r} -> {links[path]!r} leads outside the part (through the part's "
                f"other links), or round a loop (more than {MAX_LINK_HOPS} links); refused"
            )
        if where and where not in entries:
            raise ConfigError(
                f"part {part}: symlink {path!r} -> {links[path]!r} leads to {where!r}, which the part does not "
                "hold; pack its target too, or the file instead of the link"
            )


def plan_part(build_dir: str | Path, name: str, pattern: str, destination: str) -> PartPlan:
    """Expand the part's glob under ``build_dir`` into sorted entries, reading nothing outside it.

    A match that is a folder contributes its contents, anything else itself under its base name; a
    symlink (matched, or met in a folder) is packed as a link, never followed.
    """
    if os.path.isabs(pattern) or ".." in Path(pattern).parts or "\x00" in pattern:
        raise ConfigError(
            f"part {name}: path {pattern!r} must be relative to the build folder, without '..' (or a NUL)"
        )
    where = f"part {name}"
    entries: dict[str, Entry] = {}
    with BuildDir(build_dir) as root:
        matches = root.glob(pattern, where)
        if not matches:
            raise ConfigError(
                f"part {name}: path {pattern!r} matches nothing in {root.path} (symlinks are not followed)"
            )
        for match, st in matches:
            if stat.S_ISDIR(st.st_mode):  # a matched folder contributes its contents
                for rel, child in root.walk(match, where):
                    _utf8(rel, where)
                    if rel in entries:
                        raise ConfigError(f"part {name}: two matches of its path land on {rel!r}")
                    entries[rel] = _entry_for(root, rel, match, child, name)
            else:
                folder, slash, leaf = match.rpartition("/")
                _utf8(leaf, where)
                if leaf in entries:
                    raise ConfigError(f"part {name}: two matches of its path land on {leaf!r}")
                entries[leaf] = _entry_for(root, leaf, folder if slash else None, st, name)
    _check_part_links(entries, name)
    return PartPlan(name=name, destination=destination, entries=[entries[k] for k in sorted(entries)])


def _open_entry(e: Entry, root: BuildDir | None = None) -> BinaryIO:
    """Open a planned file below its build folder without following any link (see ``confined``)."""
    if root is not None:
        return root.open_file(e.source, "build folder", same_as=e.ident)
    with BuildDir(e.root or ".") as own:
        return own.open_file(e.source, "build folder", same_as=e.ident)


def hash_entries(entries: list[Entry]) -> list[Entry]:
    """Entries with ``sha256`` filled by reading the files (used to compare with a committed version)."""
    out = []
    roots: dict[str, BuildDir] = {}
    try:
        for e in entries:
            if e.type == "file":
                root = roots.get(e.root) or roots.setdefault(e.root, BuildDir(e.root or "."))
                h = hashlib.sha256()
                with _open_entry(e, root) as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                e = replace(e, sha256=h.hexdigest())
            out.append(e)
    finally:
        for r in roots.values():
            r.close()
    return out


def probe_of(e: Entry) -> str:
    """SHA-256 of a planned file's first PROBE_BYTES (see manifest.PROBE_BYTES)."""
    with _open_entry(e) as f:
        return hashlib.sha256(f.read(PROBE_BYTES)).hexdigest()


def _tarinfo(e: Entry) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(e.path)
    ti.mode = e.mode
    ti.mtime = e.mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if e.type == "dir":
        ti.type = tarfile.DIRTYPE
    elif e.type == "symlink":
        ti.type = tarfile.SYMTYPE
        ti.linkname = e.target or ""
    else:
        ti.type = tarfile.REGTYPE
        ti.size = e.size
    return ti


COALESCE = 256 << 10  # see TarStream.read
TAR_READ_BUFFER = 64 << 10  # see extract_part
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_TYPEFLAG = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "file": tarfile.REGTYPE}
_USTAR_MAX = 8**11  # size and mtime fit the header's 11 octal digits below this
_HEADER_TAIL = tarfile.POSIX_MAGIC + b"\x00" * (32 + 32 + 8 + 8 + 155 + 12)  # magic, uname, gname, dev*, prefix, pad


def _header(e: Entry) -> bytes:
    """The tar header of ``e``: the same bytes tarfile writes in PAX format, about 8x faster.

    Why: with many small files tarfile's header code was over half of the packing CPU. The common
    case (ASCII names and targets up to 100 bytes, sizes and times that fit 11 octal digits, owner
    0:0 without names) is a single ustar block, built here directly; anything else goes to tarfile,
    which adds the PAX records it needs. tests/unit/test_archive.py checks both give equal bytes.
    """
    name = e.path + "/" if e.type == "dir" else e.path
    link = e.target or "" if e.type == "symlink" else ""
    size = e.size if e.type == "file" else 0
    try:
        nb, lb = name.encode("ascii"), link.encode("ascii")
    except UnicodeEncodeError:
        nb = lb = b""
        ok = False
    else:
        ok = len(nb) <= 100 and len(lb) <= 100 and 0 <= size < _USTAR_MAX and 0 <= e.mtime < _USTAR_MAX
    if not ok:
        return _tarinfo(e).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    block = b"".join(
        (
            nb.ljust(100, b"\x00"),
            b"%07o\x00" % (e.mode & 0o7777),
            b"0000000\x000000000\x00",  # uid, gid: 0
            b"%011o\x00" % size,
            b"%011o\x00" % e.mtime,
            b"        ",  # the checksum field counts as spaces
            _TYPEFLAG[e.type],
            lb.ljust(100, b"\x00"),
            _HEADER_TAIL,
        )
    )
    return block[:148] + b"%06o\x00" % sum(block) + block[155:]


class TarStream(io.RawIOBase):
    """A readable tar of ``entries``, produced as it is read; fills each entry's ``sha256``.

    A file that changes size while it is packed is an error: the manifest would otherwise lie.
    ``spend``: take the entries out of the list as they are packed, keeping only what the manifest
    says of each (``files``, in order): a put has no use for them afterwards, and at 100,000 entries
    they are 16 MB more than their file entries.
    """

    def __init__(
        self, entries: list[Entry], on_bytes: Callable[[int], None] | None = None, *, spend: bool = False
    ) -> None:
        self._entries = entries
        self._spend = spend
        self.files: list[FileEntry] = []
        self._gen = self._generate()
        self._buf = b""
        self._on_bytes = on_bytes
        self._aborted: BaseException | None = None
        self._pending = b""
        self.size = 0

    def _next(self) -> bytes:
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        return next(self._gen, b"")

    def abort(self, reason: BaseException) -> None:
        """Stop producing: the consumer failed, so reading the remaining files is wasted work."""
        self._aborted = reason

    def readable(self) -> bool:
        return True

    def _generate(self) -> Iterator[bytes]:
        roots: dict[str, BuildDir] = {}
        try:
            yield from self._produce(roots)
        finally:
            for r in roots.values():
                r.close()

    def _take(self) -> Iterator[Entry]:
        if not self._spend:
            yield from self._entries
            return
        self._entries.reverse()  # popped from the end: taking from the front would move the rest each time
        while self._entries:
            yield self._entries.pop()

    def _produce(self, roots: dict[str, BuildDir]) -> Iterator[bytes]:
        written = 0
        for e in self._take():
            header = _header(e)
            written += len(header)
            yield header
            if e.type == "file":
                written += yield from self._file(e, roots)
            if self._spend:
                self.files.append(e.to_file_entry())
        end = 2 * BLOCK
        end += -(written + end) % RECORD
        yield b"\0" * end

    def _file(self, e: Entry, roots: dict[str, BuildDir]) -> Generator[bytes, None, int]:
        """A file's bytes and padding (their length is the value); sets its ``sha256`` and ``probe``."""
        written = 0
        h = hashlib.sha256()
        remaining = e.size
        root = roots.get(e.root) or roots.setdefault(e.root, BuildDir(e.root or "."))
        with _open_entry(e, root) as f:
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    raise ConfigError(f"{e.source!r} shrank while it was packed")
                h.update(chunk)
                if remaining == e.size and e.size > PROBE_BYTES:
                    e.probe = hashlib.sha256(chunk[:PROBE_BYTES]).hexdigest()
                remaining -= len(chunk)
                written += len(chunk)
                if self._on_bytes:
                    self._on_bytes(len(chunk))
                yield chunk
            if f.read(1):
                raise ConfigError(f"{e.source!r} grew while it was packed")
        e.sha256 = h.hexdigest()
        pad = -e.size % BLOCK
        if pad:
            written += pad
            yield b"\0" * pad
        return written

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if not self._buf:
            self._buf = self._next()
            if not self._buf:
                return 0
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.size += n
        return n

    def read(self, size: int = -1) -> bytes:
        """Hand out whole generated chunks when they fit: fewer copies than ``readinto``."""
        if self._aborted is not None:
            raise self._aborted
        if size is None or size < 0:
            return b"".join([self._buf, self._pending, *self._gen])
        if not self._buf:
            self._buf = self._next()
        if len(self._buf) < min(size, COALESCE):
            # Small files come as a header, a few KiB and padding: gather them, so that whoever reads
            # (gpg's stdin pipe, an upload) gets one large write, not three tiny ones per file. A
            # large chunk is never copied into the gathering: it waits for the next read.
            pieces, have = [self._buf], len(self._buf)
            while have < min(size, COALESCE):
                nxt = self._next()
                if not nxt:
                    break
                if len(nxt) >= COALESCE:
                    self._pending = nxt
                    break
                pieces.append(nxt)
                have += len(nxt)
            self._buf = b"".join(pieces) if len(pieces) > 1 else pieces[0]
        if len(self._buf) <= size:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        self.size += len(out)
        return out


# A GNU long name or link, or a PAX header, holds a path, a link target and a few numbers: far below
# this. tarfile reads such a header's whole announced size into memory before anything is checked,
# and a carrier can encrypt a payload to the (public) recipient key whose first header announces
# gigabytes of zlib-compressed name.
MAX_EXTENDED_HEADER = 1 << 20
_EXTENDED_TYPES = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
)


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses an extended header too large to be a name, before it is read."""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and self.size > MAX_EXTENDED_HEADER:
            raise VerificationError(
                f"the archive has an extended header of {self.size} bytes (at most {MAX_EXTENDED_HEADER} "
                "hold a name): not an archive the signed manifest describes"
            )
        return super()._proc_member(tarfile)  # type: ignore[misc]  # typeshed omits this private hook


class FileWriter(Protocol):
    """Takes one file's bytes; ``commit`` only after its SHA-256 matched the signed manifest."""

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class FileSink(Protocol):
    """Receives every regular file as it streams out of a part's tar (``begin`` -> writes -> commit/abort).

    A file is committed only once its bytes hash to the signed manifest's SHA-256, so a consumer never
    keeps an unverified file; ``begin`` may return None to let a file pass (it is still checked).
    """

    def begin(self, part: str, entry: FileEntry) -> FileWriter | None: ...


@dataclass
class ExtractResult:
    files: int
    bytes: int


def _create(part: str, name: str, make: Callable[..., Any], *args: Any) -> Any:
    """Create one node with ``make``: an O_EXCL open, mkdir and symlink refuse a name that exists, so
    no lstat per entry is needed to keep the archive from writing over what it made before."""
    try:
        return make(*args)
    except FileExistsError:
        raise VerificationError(f"part {part}: {name!r} already exists in the staging folder") from None


def _type_of(ti: tarfile.TarInfo) -> str:
    if ti.isreg():
        return "file"
    if ti.isdir():
        return "dir"
    if ti.issym():
        return "symlink"
    if ti.islnk():
        return "hardlink"
    return "special"


def extract_part(
    stream: io.RawIOBase | io.BufferedIOBase,
    expected: tuple[FileEntry, ...],
    dest: str | None,
    *,
    part: str,
    on_bytes: Callable[[int], None] | None = None,
    sink: FileSink | None = None,
) -> ExtractResult:
    """Extract the tar in ``stream`` into ``dest`` (None: only check), admitting exactly ``expected``.

    Every entry must be listed in the signed manifest with the same type, mode, size and SHA-256,
    at most once; links may not lead out of the part, judged through the part's own links; no entry
    may pass through a symlink. The caller removes
    ``dest`` on any error. ``sink``, when given, also receives each regular file's bytes (see
    ``FileSink``): a streaming consumer such as ``publish --from-config`` needs no disk.
    """
    want: dict[str, FileEntry | None] = {f.path: f for f in expected}
    try:  # the manifest parser checked this too; a caller with entries from elsewhere gets no less
        check_links(expected)
    except VerificationError as e:
        raise VerificationError(f"part {part}: {e}") from None
    run = _Extraction(part, want, dest, on_bytes, sink)
    if dest is not None:
        os.makedirs(dest, exist_ok=True)
        run.real_dest = os.path.realpath(dest)
    # tarfile's stream reader copies what remains of its buffer on every read (each 512-byte header
    # too): a small buffer keeps that cheap for small files; large reads are unaffected.
    with tarfile.open(
        fileobj=stream,
        mode="r|",
        encoding="utf-8",
        errors="strict",
        bufsize=TAR_READ_BUFFER,
        tarinfo=_BoundedTarInfo,
    ) as tf:
        # tarfile keeps every member it read (TarFile.members) for random access a stream never
        # has: 27 MB at 100,000 files. Each is dropped once handled. (typeshed does not declare
        # the attribute; tarfile has had it, a plain list, since it exists.)
        members: list[tarfile.TarInfo] = tf.members  # type: ignore[attr-defined]
        read = _member_reader(tf.fileobj, stream)
        while (ti := tf.next()) is not None:
            run.member(read, ti)
            members.clear()
    run.check_complete()
    run.set_folder_modes()
    return ExtractResult(files=sum(1 for f in expected if f.type == "file"), bytes=run.written)


def _member_reader(tar_stream: Any, raw: io.RawIOBase | io.BufferedIOBase) -> Callable[[int], bytes]:
    """A member's bytes past tarfile's stream reader, which copies each of them twice.

    tarfile's ``_Stream.read`` gathers small reads of its buffer size and joins and slices them:
    two copies of every byte of a large file. What is left in its buffer is served first; then
    reads go straight to ``raw``, which hands out its chunks whole. The stream's position is kept
    as tarfile counts it, so its next header read (and the skip over padding) finds its place. Only
    tarfile's plain stream has ``buf`` and ``pos``; anything else is read as tarfile would.
    """
    if not (hasattr(tar_stream, "buf") and hasattr(tar_stream, "pos") and getattr(tar_stream, "comptype", "") == "tar"):
        return cast("Callable[[int], bytes]", tar_stream.read)

    def read(size: int) -> bytes:
        data: bytes
        if tar_stream.buf:
            data = tar_stream.buf[:size]
            tar_stream.buf = tar_stream.buf[size:]
        else:
            data = raw.read(size) or b""
        tar_stream.pos += len(data)
        return data

    return read


@dataclass
class _Extraction:
    """One part's extraction in progress: what the manifest admits and what the tar has delivered so far.

    Each member goes through the same phases, in this order: it is admitted (listed, once, same
    type, size and link target as the manifest says), its destination is resolved (never through
    a symlink), then it is made: a folder, a link, or a regular file whose bytes must hash to the
    manifest's SHA-256 before it keeps its mode. At the end the file set must be complete.
    """

    part: str
    # The manifest's entries by path; an entry the tar has delivered becomes None. Why not a set of
    # the names seen: at 100,000 files that set and the tar's own copies of the names took 9 MB.
    want: dict[str, FileEntry | None]
    dest: str | None
    on_bytes: Callable[[int], None] | None
    sink: FileSink | None
    real_dest: str = ""
    dirs: list[FileEntry] = field(default_factory=list)
    # Folders this extraction made (relative to dest): real folders, so a file below one of them
    # cannot be written through a symlink; only other parents need the realpath walk.
    made: set[str] = field(default_factory=lambda: {""})
    written: int = 0

    def member(self, read: Callable[[int], bytes], ti: tarfile.TarInfo) -> None:
        name, entry = self._admit(ti)
        target, rel_parent = self._destination(name)
        if entry.type == "dir":
            self._make_dir(name, entry, target, rel_parent)
        elif entry.type == "symlink":
            if target is not None:
                _create(self.part, name, os.symlink, entry.target or "", target)
                os.utime(target, (entry.mtime, entry.mtime), follow_symlinks=False)
        else:
            self._write_file(read, ti.size, name, entry, target)

    def _admit(self, ti: tarfile.TarInfo) -> tuple[str, FileEntry]:
        """The manifest's entry for ``ti``, which must be listed, met once, and agree with it."""
        part = self.part
        name = ti.name.rstrip("/") if ti.isdir() else ti.name
        if name not in self.want:  # (a name the manifest lists passed this check when it was parsed)
            try:
                check_member_path(name)
            except VerificationError as e:
                raise VerificationError(f"part {part}: {e}") from None
            raise VerificationError(f"part {part}: {name!r} is in the archive but not in the signed manifest")
        entry = self.want[name]
        if entry is None:
            raise VerificationError(f"part {part}: {name!r} appears twice in the archive")
        self.want[name] = None
        _check_member(part, name, ti, entry)
        return name, entry

    def _destination(self, name: str) -> tuple[str | None, str]:
        """(where ``name`` goes, its parent relative to dest); refused if a symlink leads there."""
        if self.dest is None:
            return None, ""
        target = os.path.join(self.dest, name)
        rel_parent = os.path.dirname(name)
        if rel_parent not in self.made and os.path.realpath(os.path.dirname(target)) != os.path.join(
            self.real_dest, rel_parent
        ).rstrip("/"):
            raise VerificationError(f"part {self.part}: {name!r} would be written through a symlink")
        return target, rel_parent

    def _make_dir(self, name: str, entry: FileEntry, target: str | None, rel_parent: str) -> None:
        if target is not None:
            _create(self.part, name, os.mkdir, target, 0o700)
            if rel_parent in self.made:  # a real folder inside a real folder
                self.made.add(name)
        self.dirs.append(entry)  # its mode and time are set at the end, once nothing more goes in

    def _write_file(
        self, read: Callable[[int], bytes], size: int, name: str, entry: FileEntry, target: str | None
    ) -> None:
        """The member's bytes straight from the tar stream (tarfile skips the padding on the next
        member), through an unbuffered descriptor: small files are one write each."""
        fd = _create(self.part, name, os.open, target, _CREATE_FLAGS, 0o600) if target is not None else None
        sunk = self.sink.begin(self.part, entry) if self.sink is not None else None
        try:
            self._copy(read, size, name, entry, fd, sunk)
            if fd is not None:
                os.fchmod(fd, entry.mode)
                os.utime(fd, (entry.mtime, entry.mtime))
        except BaseException:
            if sunk is not None:
                sunk.abort()
            raise
        finally:
            if fd is not None:
                os.close(fd)
        if sunk is not None:
            sunk.commit()
        self.written += size

    def _copy(
        self,
        read: Callable[[int], bytes],
        size: int,
        name: str,
        entry: FileEntry,
        fd: int | None,
        sunk: FileWriter | None,
    ) -> None:
        """Hand ``size`` bytes to the file and the sink; they must hash to the manifest's SHA-256."""
        h = hashlib.sha256()
        remaining = size
        while remaining > 0:
            chunk = read(min(CHUNK, remaining))
            if not chunk:
                raise VerificationError(f"part {self.part}: {name!r} is truncated")
            h.update(chunk)
            remaining -= len(chunk)
            if fd is not None:
                _write_all(fd, chunk)
            if sunk is not None:
                sunk.write(chunk)
            if self.on_bytes:
                self.on_bytes(len(chunk))
        if h.hexdigest() != entry.sha256:
            raise VerificationError(f"part {self.part}: SHA-256 of {name!r} differs from the signed manifest")

    def check_complete(self) -> None:
        missing = sorted(name for name, entry in self.want.items() if entry is not None)
        if missing:
            raise VerificationError(
                f"part {self.part}: {len(missing)} file(s) of the signed manifest are missing from the archive, "
                f"e.g. {missing[0]!r}"
            )

    def set_folder_modes(self) -> None:
        """Deepest first: a read-only folder must not be closed before what goes below it is done."""
        if self.dest is None:
            return
        for d in sorted(self.dirs, key=lambda e: e.path.count("/"), reverse=True):
            path = os.path.join(self.dest, d.path)
            os.chmod(path, d.mode)
            os.utime(path, (d.mtime, d.mtime))


def _check_member(part: str, name: str, ti: tarfile.TarInfo, entry: FileEntry) -> None:
    """The archive's member must be what the manifest says: type, size, and for a link its target."""
    kind = _type_of(ti)
    if kind != entry.type:
        raise VerificationError(f"part {part}: {name!r} is a {kind} in the archive, a {entry.type} in the manifest")
    if kind == "file" and ti.size != entry.size:
        raise VerificationError(
            f"part {part}: {name!r} is {ti.size} bytes in the archive, {entry.size} in the manifest"
        )
    if kind == "symlink" and ti.linkname != entry.target:
        raise VerificationError(f"part {part}: symlink {name!r} target differs from the manifest")
    if kind == "symlink" and not symlink_stays_inside(name, ti.linkname):
        raise VerificationError(f"part {part}: symlink {name!r} points outside its part")
