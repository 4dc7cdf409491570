"""Payloads on removable media: pieces of at most a chosen size, each with its SHA-256 in an index.

A medium is a folder in the bucket layout of docs/format.md (the source's ``prefix`` included, as
``pack --to-dir`` writes it), except that each payload is kept as pieces:

    <prefix><name>/<version>/manifest.json.asc          the commit object, byte for byte; written last
    <prefix><name>/_blobs/<id>.pieces/00001             bytes [0, piece size) of the payload, 00002 the next...
    <prefix><name>/_blobs/<id>.pieces/SHA256SUMS        the pieces' SHA-256, for ``sha256sum --strict -c``
    <prefix><name>/_blobs/<id>.index.json               payload size and SHA-256, piece size, and each piece's
                                                        number, offset, size and SHA-256; ``complete`` once whole

Why pieces: FAT32 (what most removable media and transfer kiosks take) holds files of at most
4 GiB - 1, cross-domain tools cap file sizes, and a damaged piece can be written again alone. Why an
index with a hash per piece: a piece damaged on the way is *named* and the import stops before it
completes anything, and a resumed export knows which pieces are whole without fetching them again.
One piece becomes one multipart part on import, hence 5 MiB to 5 GiB per piece and at most 10,000.

The index is not signed and is never the reason to trust a byte: the payload's SHA-256 in the signed
manifest is checked over all the pieces together. The index only lets a failure be named early.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

from offline_bundle.core import safe_fs
from offline_bundle.core.streams import ReadStream, SeekableStream
from offline_bundle.errors import ConfigError, VerificationError
from offline_bundle.storage.base import ObjectInfo
from offline_bundle.storage.folder import DirStore

MiB = 1 << 20
GiB = 1 << 30
MIN_PIECE = 5 * MiB  # S3's smallest multipart part: import uploads one part per piece
MAX_PIECE = 5 * GiB  # S3's largest part
DEFAULT_PIECE = 4000 * MiB  # under FAT32's 4 GiB - 1 per file
MAX_PIECES = 10_000  # S3's part limit
INDEX_FORMAT = "offline-bundle-pieces/1"
INDEX_SUFFIX = ".index.json"
PIECES_SUFFIX = ".pieces"
SUMS_NAME = "SHA256SUMS"
TMP_PREFIX = ".tmp-"
INDEX_MAX_BYTES = 8 * MiB
CHUNK = MiB

_SIZE_RE = re.compile(r"\s*(\d+)\s*(?:([KMGT])(?:i?B)?|B)?\s*\Z", re.IGNORECASE)
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def parse_size(text: str, what: str = "--piece-size") -> int:
    """``4000MiB``, ``64M``, ``4G``, ``1048576``: binary units, as disks and FAT32's limit are counted."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ConfigError(f"{what} {text!r} is not a size such as 4000MiB, 64M or 1G")
    unit = m.group(2)
    return int(m.group(1)) << (10 * ("KMGT".index(unit.upper()) + 1) if unit else 0)


def check_piece_size(size: int, what: str = "--piece-size") -> int:
    if not MIN_PIECE <= size <= MAX_PIECE:
        raise ConfigError(
            f"{what} must be between 5 MiB and 5 GiB (each piece becomes one S3 multipart part on import)"
        )
    return size


def piece_plan(size: int, piece_size: int) -> list[tuple[int, int]]:
    """(offset, length) of each piece, in order; piece numbers are the 1-based positions."""
    return [(off, min(piece_size, size - off)) for off in range(0, size, piece_size)]


def piece_name(number: int) -> str:
    return f"{number:05d}"


@dataclass(frozen=True)
class Piece:
    number: int
    offset: int
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return piece_name(self.number)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "offset": self.offset, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class PieceIndex:
    """What a medium says about one payload's pieces (see the module docstring: informative, not trusted)."""

    sha256: str
    size: int
    piece_size: int
    pieces: tuple[Piece, ...] = ()
    complete: bool = False

    def to_json_bytes(self) -> bytes:
        doc = {
            "format": INDEX_FORMAT,
            "payload": {"sha256": self.sha256, "size": self.size},
            "piece_size": self.piece_size,
            "complete": self.complete,
            "pieces": [p.to_json() for p in sorted(self.pieces, key=lambda p: p.number)],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode("ascii") + b"\n"

    def with_piece(self, piece: Piece) -> PieceIndex:
        others = tuple(p for p in self.pieces if p.number != piece.number)
        return replace(self, pieces=tuple(sorted((*others, piece), key=lambda p: p.number)))

    def sha256sums(self) -> str:
        return "".join(f"{p.sha256}  {p.name}\n" for p in self.pieces)

    def check_complete(self, where: str) -> None:
        """Every byte of the payload in exactly one piece, in order; sizes a multipart upload accepts."""
        plan = piece_plan(self.size, self.piece_size)
        got = [(p.number, p.offset, p.size) for p in self.pieces]
        want = [(i, off, length) for i, (off, length) in enumerate(plan, 1)]
        if not self.complete:
            raise VerificationError(
                f"{where} does not list the pieces of the whole payload: the export did not finish; run it again"
            )
        if got != want:
            raise _bad(where, f"its {len(got)} piece(s) do not cover the payload's {self.size} bytes in order")


def _bad(where: str, what: str) -> VerificationError:
    return VerificationError(f"{where} is malformed: {what}")


def parse_index(data: bytes, where: str) -> PieceIndex:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a number of thousands of digits, nesting
        raise _bad(where, "not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise _bad(where, f"format is not {INDEX_FORMAT}")
    payload = doc.get("payload")
    pieces = doc.get("pieces")
    complete = doc.get("complete")
    if not isinstance(payload, dict) or not isinstance(pieces, list) or not isinstance(complete, bool):
        raise _bad(where, "payload, pieces or complete missing")
    sha, size, piece_size = payload.get("sha256"), _count(payload.get("size")), _count(doc.get("piece_size"))
    if not isinstance(sha, str) or not _HEX64.match(sha) or size is None or piece_size is None:
        raise _bad(where, "bad payload sha256, size or piece_size")
    if not MIN_PIECE <= piece_size <= MAX_PIECE:
        raise _bad(where, f"piece_size {piece_size} is not between 5 MiB and 5 GiB")
    if -(-size // piece_size) > MAX_PIECES or len(pieces) > MAX_PIECES:
        raise _bad(where, f"more than {MAX_PIECES} pieces")
    out = [_parse_piece(f"pieces[{i}]", p, size, piece_size, where) for i, p in enumerate(pieces)]
    if len({p.number for p in out}) != len(out):
        raise _bad(where, "a piece is listed twice")
    return PieceIndex(sha, size, piece_size, tuple(sorted(out, key=lambda p: p.number)), complete)


def _parse_piece(what: str, p: object, size: int, piece_size: int, where: str) -> Piece:
    """One entry of an index's ``pieces``: it must lie within the payload and within one piece's size."""
    if not isinstance(p, dict):
        raise _bad(where, f"{what} is not a map")
    name, offset, psize, psha = p.get("name"), _count(p.get("offset")), _count(p.get("size")), p.get("sha256")
    if not (isinstance(name, str) and re.fullmatch(r"[0-9]{5}", name) and int(name) >= 1):
        raise _bad(where, f"{what}.name is not a 5-digit piece number")
    if offset is None or psize is None or not isinstance(psha, str) or not _HEX64.match(psha):
        raise _bad(where, f"{what} has a bad offset, size or sha256")
    if psize > piece_size or offset + psize > size:
        raise _bad(where, f"{what} reaches beyond the payload or its piece size")
    return Piece(int(name), offset, psize, psha)


def _count(value: object) -> int | None:
    """``value`` if it is a whole number >= 0 (not a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# ------------------------------------------------------------------------------------- on the medium
#
# Every file on a medium is reached through ``safe_fs`` with its key relative to the medium's root:
# no link on the medium is followed, for reading or for writing.


def check_key(key: str) -> str:
    """A key from a verified manifest, still checked: it must name a place below the medium's root."""
    if key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise VerificationError(f"unsafe key {key!r}")
    safe_fs.split_below(key)
    return key


def medium_path(root: str, key: str) -> str:
    """Where an object key lives below the medium's root (for messages; files are opened by key)."""
    return os.path.join(root, *check_key(key).split("/"))


def index_key(payload_key: str) -> str:
    return check_key(payload_key) + INDEX_SUFFIX


def pieces_key(payload_key: str) -> str:
    return check_key(payload_key) + PIECES_SUFFIX


def index_path(root: str, payload_key: str) -> str:
    return medium_path(root, index_key(payload_key))


def pieces_dir(root: str, payload_key: str) -> str:
    return medium_path(root, pieces_key(payload_key))


def load_index(root: str, payload_key: str) -> PieceIndex | None:
    path = index_path(root, payload_key)
    try:
        f = safe_fs.open_file_below(root, index_key(payload_key))
    except FileNotFoundError:
        return None
    with f:
        data = f.read(INDEX_MAX_BYTES + 1)
    if len(data) > INDEX_MAX_BYTES:
        raise _bad(path, "too large")
    return parse_index(data, path)


def hash_file(root: str, key: str, *hashers: Any, on_bytes: Callable[[int], None] | None = None) -> int:
    """Feed a regular file below the root to every hasher; returns its size."""
    total = 0
    with safe_fs.open_file_below(root, check_key(key)) as f:
        while chunk := f.read(CHUNK):
            for h in hashers:
                h.update(chunk)
            total += len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return total


def remove_pieces(root: str, payload_key: str) -> None:
    safe_fs.remove_below(root, index_key(payload_key))
    safe_fs.remove_below(root, pieces_key(payload_key))


# ------------------------------------------------------------------------- reading a medium as a store


def _payload_of(key: str) -> tuple[str, str] | None:
    """('index' | 'piece', payload key) for the files pieces add below ``_blobs/``, else None."""
    folder, _, leaf = key.rpartition("/")
    if folder.endswith("/_blobs") or folder == "_blobs":
        if leaf.endswith(INDEX_SUFFIX):
            return "index", f"{folder}/{leaf[: -len(INDEX_SUFFIX)]}"
        return None
    parent, _, pieces = folder.rpartition("/")
    if pieces.endswith(PIECES_SUFFIX) and (parent.endswith("/_blobs") or parent == "_blobs"):
        return "piece", f"{parent}/{pieces[: -len(PIECES_SUFFIX)]}"
    return None


class MediumStore(DirStore):
    """A folder store that also reads payloads kept as pieces, so an exported medium is a store too.

    ``verify``, ``unpack``, ``show``, ``list`` and ``prune`` with ``--from-dir`` then work on a medium
    written by ``export`` as on one written by ``pack --to-dir``: a payload whose index is complete reads
    (and lists, and deletes) as the one object ``_blobs/<id>``; each piece's size and SHA-256 are
    checked against the index as it streams, so a damaged piece is named.
    """

    def _complete_index(self, key: str) -> PieceIndex | None:
        if safe_fs.lstat_below(self.root, check_key(key)) is not None:
            return None
        try:
            idx = load_index(self.root, key)
        except safe_fs.UnsafePathError:
            raise
        except VerificationError:
            return None
        return idx if idx is not None and idx.complete else None

    def head(self, key: str) -> ObjectInfo | None:
        info = super().head(key)
        if info is not None:
            return info
        idx = self._complete_index(key)
        if idx is None:
            return None
        st = safe_fs.lstat_below(self.root, index_key(key))
        if st is None:
            return None
        return ObjectInfo(key, idx.size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for info in super().list(prefix):
            kind = _payload_of(info.key)
            if kind is None:
                yield info
            elif kind[0] == "index":
                idx = self._complete_index(kind[1])
                if idx is not None and kind[1].startswith(prefix):
                    yield ObjectInfo(kind[1], idx.size, info.last_modified)

    def open_read(self, key: str, size: int, on_bytes: Callable[[int], None] | None = None) -> io.RawIOBase:
        idx = self._complete_index(key)
        if idx is None:
            return super().open_read(key, size, on_bytes)
        if idx.size != size:
            raise VerificationError(
                f"{key} is {idx.size} bytes on the medium where the signed manifest says {size}: "
                "the payload was altered or replaced"
            )
        idx.check_complete(index_path(self.root, key))
        return JoinedPieces(self.root, pieces_key(key), idx, on_bytes)

    def delete(self, key: str) -> None:
        super().delete(key)
        remove_pieces(self.root, key)


class JoinedPieces(ReadStream):
    """A payload's pieces read as one stream; each piece's size and SHA-256 must match its index entry."""

    def __init__(
        self, root: str, folder_key: str, index: PieceIndex, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        self._root = root
        self._folder_key = folder_key
        self._folder = medium_path(root, folder_key)
        self._on_bytes = on_bytes
        self._pieces = list(index.pieces)
        self._current: BinaryIO | None = None
        self._piece: Piece | None = None
        self._hash = hashlib.sha256()
        self._read = 0
        self._failure: VerificationError | None = None

    def _next(self) -> bool:
        if not self._pieces:
            return False
        self._piece = self._pieces.pop(0)
        try:
            self._current = safe_fs.open_file_below(self._root, f"{self._folder_key}/{self._piece.name}")
        except FileNotFoundError:
            raise VerificationError(f"piece {self._piece.name} is missing from {self._folder}") from None
        self._hash = hashlib.sha256()
        self._read = 0
        return True

    def _finish_piece(self) -> None:
        assert self._piece is not None and self._current is not None
        self._current.close()
        self._current = None
        if self._read != self._piece.size or self._hash.hexdigest() != self._piece.sha256:
            raise VerificationError(
                f"piece {self._piece.name} in {self._folder} does not match its index "
                f"({self._read} bytes read, {self._piece.size} expected, or another SHA-256): the medium was damaged"
            )

    def read(self, size: int = -1) -> bytes:
        # A failure sticks: a reader that drains the rest after an error must not read on past a bad
        # piece into the next ones (and then report a short payload instead of the piece).
        if self._failure is not None:
            raise self._failure
        try:
            return self._read_on(CHUNK if size is None or size < 0 else size)
        except VerificationError as e:
            self._failure = e
            raise

    def _read_on(self, want: int) -> bytes:
        while True:
            if self._current is None and not self._next():
                return b""
            assert self._current is not None
            data = self._current.read(want)
            if data:
                self._hash.update(data)
                self._read += len(data)
                if self._on_bytes:
                    self._on_bytes(len(data))
                return data
            self._finish_piece()

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


class FileWindow(SeekableStream):
    """Bytes ``[offset, offset + length)`` of an open file as a seekable stream of its own (positions from 0).

    It takes the file already opened (through ``safe_fs`` for a medium) and closes it when closed.
    """

    def __init__(self, f: BinaryIO, offset: int, length: int) -> None:
        self._f = f
        self._offset = offset
        self._length = length
        self._pos = 0
        self._f.seek(offset)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        pos = super().seek(offset, whence)
        self._f.seek(self._offset + pos)
        return pos

    def read(self, size: int | None = -1) -> bytes:
        left = self._length - self._pos
        n = left if size is None or size < 0 else min(size, left)
        data = self._f.read(n) if n > 0 else b""
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._f.close()
        super().close()
