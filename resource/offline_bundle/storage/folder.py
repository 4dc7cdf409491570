"""The folder store: a local folder holding objects as files at their keys (removable media, tests)."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

from offline_bundle.core import safe_fs
from offline_bundle.core.streams import ReadStream
from offline_bundle.errors import AlreadyExistsError, ConfigError, StoreError, VerificationError
from offline_bundle.storage.base import COMMIT_MAX_BYTES, BlobWriter, ObjectInfo, Store, Written


class DirStore(Store):
    """A local folder holding objects as files at their keys (removable media, tests).

    Whoever handed the folder over may have planted links in it: every file below the root is
    opened through ``safe_fs`` (no link followed on any component, regular files only), listings
    never enter a linked folder, and writes never go through a link.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.description = f"folder {self.root}"
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise ConfigError(f"the folder path {self.root[:60]}… is longer than the file system allows") from None
            raise
        safe_fs.check_root(self.root)

    def _path(self, key: str) -> str:
        """Where ``key`` is, for messages; every access goes through ``safe_fs`` with the key itself."""
        if key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"unsafe key {key!r}")
        return os.path.join(self.root, key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Files, and links and other nodes that are not folders (reading them is refused), under ``prefix``."""
        base = prefix.rpartition("/")[0] if "/" in prefix else ""
        if base:
            self._path(base)
        for entry in safe_fs.walk_below(self.root, base):
            name = entry.relpath.rpartition("/")[2]
            if entry.relpath.startswith(prefix) and not name.startswith(".tmp-"):
                yield ObjectInfo(entry.relpath, entry.stat.st_size, datetime.fromtimestamp(entry.stat.st_mtime, UTC))

    def head(self, key: str) -> ObjectInfo | None:
        self._path(key)
        st = safe_fs.lstat_below(self.root, key)
        if st is None:
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def get_bytes(self, key: str, limit: int = COMMIT_MAX_BYTES) -> bytes | None:
        self._path(key)
        try:
            return safe_fs.read_below(self.root, key, limit)
        except safe_fs.TooLargeError:
            raise StoreError(f"{key} is larger than {limit} bytes") from None

    def put_bytes(
        self, key: str, data: bytes, *, only_if_absent: bool = False, metadata: Mapping[str, str] | None = None
    ) -> None:
        del metadata  # a folder keeps no user metadata
        self._path(key)
        try:
            safe_fs.write_below(self.root, key, data, exclusive=only_if_absent)  # "create if absent": a hard link
        except FileExistsError:
            raise AlreadyExistsError(f"{key} already exists") from None
        except safe_fs.UnsafePathError as e:  # a link planted on the way: the folder refuses the write
            raise StoreError(str(e)) from None

    def _open_checked(self, key: str, size: int) -> io.FileIO:
        self._path(key)
        try:
            fd = safe_fs.open_below(self.root, key)
        except FileNotFoundError:
            raise StoreError(f"{key} is missing from {self.description}") from None
        f = io.FileIO(fd, "rb")
        actual = os.fstat(f.fileno()).st_size
        if actual != size:
            f.close()
            raise VerificationError(
                f"{key} is {actual} bytes where the signed manifest says {size}: the payload was altered or replaced"
            )
        return f

    def open_read(self, key: str, size: int, on_bytes: Callable[[int], None] | None = None) -> io.RawIOBase:
        return _CountingReader(self._open_checked(key, size), on_bytes)

    def open_range(
        self, key: str, size: int, start: int, end: int, on_bytes: Callable[[int], None] | None = None
    ) -> io.RawIOBase:
        f = self._open_checked(key, size)
        f.seek(start)
        return _CountingReader(_Bounded(f, end - start), on_bytes)

    def writer(
        self,
        key: str,
        estimated_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
        *,
        memory_budget: int | None = None,
    ) -> BlobWriter:
        return _DirWriter(self, key, on_bytes)  # a file takes what it is given: no buffers to bound

    def delete(self, key: str) -> None:
        self._path(key)
        parts = safe_fs.split_below(key)
        try:
            with safe_fs.folder_below(self.root, "/".join(parts[:-1])) as folder:
                os.unlink(parts[-1], dir_fd=folder)  # a link is removed, never what it points to
        except FileNotFoundError:
            pass


class _CountingReader(ReadStream):
    def __init__(self, raw: io.RawIOBase, on_bytes: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data and self._on_bytes:
            self._on_bytes(len(data))
        return data or b""

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Bounded(ReadStream):
    """At most ``remaining`` bytes of ``raw``."""

    def __init__(self, raw: io.RawIOBase, remaining: int) -> None:
        self._raw = raw
        self._remaining = remaining

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        data = self._raw.read(size) if size else b""
        self._remaining -= len(data or b"")
        return data or b""

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DirWriter(BlobWriter):
    """Writes under a temporary name in the key's folder, renamed to the key once synced."""

    def __init__(self, store: DirStore, key: str, on_bytes: Callable[[int], None] | None) -> None:
        super().__init__()
        store._path(key)
        self._key = key
        # Written under a temporary name in the key's folder (held open), renamed to the key at close.
        self._new = safe_fs.NewFile(store.root, key)
        self._f = self._new.file
        self._on_bytes = on_bytes

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._f.write(chunk)
        self.size += len(chunk)
        if self._on_bytes:
            self._on_bytes(len(chunk))

    def close(self) -> Written:
        self._new.commit()
        return Written(self._key, self.size, self._hash.hexdigest())

    def abort(self) -> None:
        self._new.discard()
