"""Files below a root folder, reached without following any symbolic link.

A medium (a removable disk, a folder handed over by someone else) is written by whoever carried
it. A link on it — a piece pointing at ``/root/.ssh/id_rsa``, a folder ``_blobs -> /etc`` — must
neither make us read a file of this machine nor write into one of its folders. Checking a path
first and opening it afterwards leaves a gap in which the path can change, so every component is
opened relative to the folder opened before it (``dir_fd``), with ``O_NOFOLLOW``: the kernel refuses
a link at the moment of the open. The root itself is the operator's choice and may be a link.

Working from folder descriptors also means a path's total length never reaches ``PATH_MAX``: each
call names one component only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from offline_bundle.errors import VerificationError

MAX_DEPTH = 64  # folders below the root a walk enters; a bucket layout needs a handful
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(VerificationError):
    """A path below a root is a link, not the kind of node expected, or does not name a place below it."""


class TooLargeError(UnsafePathError):
    """A file ``read_below`` reads is larger than the caller's limit (a store says so in its own words)."""


def _show(root: str, parts: list[str]) -> str:
    return os.path.join(root, *parts)


def split_below(relpath: str) -> list[str]:
    """The components of a relative path; one that could leave the root or is ambiguous is refused."""
    parts = relpath.split("/")
    if relpath.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise UnsafePathError(f"{relpath!r} does not name a place below the folder it is read from")
    return parts


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def _refused(where: str, what: str, expected: str) -> UnsafePathError:
    if what == "a symbolic link":
        return UnsafePathError(
            f"{where} is a symbolic link; links on a medium are never followed: put the real {expected} there"
        )
    return UnsafePathError(f"{where} is {what} where a {expected} was expected; refused")


def _os_error(e: OSError, fd: int, name: str, where: str, expected: str) -> BaseException:
    """The clear error for an open that failed, or ``e`` itself when it is not about the path's shape."""
    if e.errno == errno.ENAMETOOLONG:
        return UnsafePathError(f"a name in {where} is longer than the file system allows")
    if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENXIO):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return e
        return _refused(where, _kind(st.st_mode), expected)
    return e


def open_root(root: str) -> int:
    """The root folder as a descriptor (following a link the operator may have named it by)."""
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise UnsafePathError(f"the path {root[:80]}… is longer than the file system allows") from None
        if e.errno == errno.ENOTDIR:
            raise UnsafePathError(f"{root} is not a folder") from None
        raise


def open_dir_below(root: str, parts: list[str], *, create: bool = False, root_fd: int | None = None) -> int:
    """A descriptor of the folder ``root/parts...``; ``create`` makes the missing ones (never through a link)."""
    fd = open_root(root) if root_fd is None else os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            where = _show(root, parts[: i + 1])
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):  # made meanwhile: the open below judges it
                    os.mkdir(name, 0o755, dir_fd=fd)
                try:
                    nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    raise _os_error(e, fd, name, where, "folder") from None
            except OSError as e:
                raise _os_error(e, fd, name, where, "folder") from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def folder_below(root: str, relpath: str = "", *, create: bool = False) -> Iterator[int]:
    """``open_dir_below`` as a context: the folder's descriptor, closed on leaving."""
    fd = open_dir_below(root, split_below(relpath) if relpath else [], create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def open_below(root: str, relpath: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``root/relpath`` without following a link on any component below ``root``.

    Without ``O_CREAT`` only a regular file is opened: a named pipe would block the reader, a device
    would be read as data. The node is checked before the open (so a pipe is never opened) and
    again on the descriptor (so a swap in between is caught).
    """
    parts = split_below(relpath)
    where = _show(root, parts)
    folder = open_dir_below(root, parts[:-1])
    leaf = parts[-1]
    try:
        before = None
        if not flags & os.O_CREAT:
            before = os.stat(leaf, dir_fd=folder, follow_symlinks=False)
            if not stat.S_ISREG(before.st_mode):
                raise _refused(where, _kind(before.st_mode), "file")
        try:
            fd = os.open(leaf, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, mode, dir_fd=folder)
        except OSError as e:
            raise _os_error(e, folder, leaf, where, "file") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _refused(where, _kind(st.st_mode), "file")
            if before is not None and (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
                raise UnsafePathError(f"{where} was replaced while it was being opened; refused")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd
    except OSError as e:
        raise _os_error(e, folder, leaf, where, "file") from None
    finally:
        os.close(folder)


def open_file_below(root: str, relpath: str) -> BinaryIO:
    """A regular file below ``root`` opened for reading as a Python file (see ``open_below``)."""
    return os.fdopen(open_below(root, relpath), "rb")


def lstat_below(root: str, relpath: str) -> os.stat_result | None:
    """What is at ``root/relpath`` (a link is described, not followed); None when nothing is."""
    parts = split_below(relpath)
    try:
        folder = open_dir_below(root, parts[:-1])
    except FileNotFoundError:
        return None
    try:
        return os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _os_error(e, folder, parts[-1], _show(root, parts), "file") from None
    finally:
        os.close(folder)


def regular_size_below(root: str, relpath: str) -> int | None:
    """The size of the regular file at ``root/relpath``; None when nothing is there; a link or other node is refused."""
    st = lstat_below(root, relpath)
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise _refused(_show(root, split_below(relpath)), _kind(st.st_mode), "file")
    return st.st_size


def read_below(root: str, relpath: str, limit: int) -> bytes | None:
    """A small regular file's bytes (None when absent); more than ``limit`` bytes is refused."""
    try:
        f = open_file_below(root, relpath)
    except FileNotFoundError:
        return None
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"{_show(root, split_below(relpath))} is larger than {limit} bytes; refused")
    return data


@dataclass(frozen=True)
class Entry:
    """One node found by ``walk_below``: its path relative to the root and what ``lstat`` says of it."""

    relpath: str
    stat: os.stat_result


def walk_below(root: str, relpath: str = "") -> Iterator[Entry]:
    """Every node below ``root/relpath`` that is not a folder, in no set order; links are listed, never entered.

    Folders are entered through their descriptors, so a link swapped in for a folder during the
    walk is refused by the kernel rather than followed; a missing start folder yields nothing.
    """
    start = split_below(relpath) if relpath else []
    try:
        fd = open_dir_below(root, start)
    except FileNotFoundError:
        return
    yield from _walk(root, fd, start, 0)


def _walk(root: str, fd: int, parts: list[str], depth: int) -> Iterator[Entry]:
    try:
        if depth > MAX_DEPTH:
            raise UnsafePathError(f"{_show(root, parts)} is nested more than {MAX_DEPTH} folders deep; refused")
        with os.scandir(fd) as entries:
            found = list(entries)
        for entry in found:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing
            if not stat.S_ISDIR(st.st_mode):
                yield Entry("/".join([*parts, entry.name]), st)
                continue
            try:
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _os_error(e, fd, entry.name, _show(root, [*parts, entry.name]), "folder") from None
            yield from _walk(root, sub, [*parts, entry.name], depth + 1)
    finally:
        os.close(fd)


def remove_below(root: str, relpath: str) -> None:
    """Remove whatever is at ``root/relpath`` — a file, a link (not its target), or a folder tree below root."""
    parts = split_below(relpath)
    try:
        folder = open_dir_below(root, parts[:-1])
    except FileNotFoundError:
        return
    try:
        st = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(parts[-1], dir_fd=folder)  # the descriptor-based walk: links inside are unlinked
        else:
            os.unlink(parts[-1], dir_fd=folder)
    except FileNotFoundError:
        pass
    finally:
        os.close(folder)


def fsync_folder(fd: int) -> None:
    """Make a rename in a folder durable (a medium pulled right after must not lose it)."""
    with contextlib.suppress(OSError):  # some file systems (vfat through some drivers) cannot fsync a folder
        os.fsync(fd)


class NewFile:
    """A file written under a temporary name in a folder below a root, then renamed to its name.

    The folder is held open from the start, so the rename lands in the folder the temporary file
    was made in even if a link is planted on the path meanwhile; a rename replaces a link at the
    final name itself, never the file it points to.
    """

    def __init__(self, root: str, relpath: str, *, tmp_prefix: str = ".tmp-") -> None:
        parts = split_below(relpath)
        self.where = _show(root, parts)
        self.name = parts[-1]
        self._folder = open_dir_below(root, parts[:-1], create=True)
        self._tmp = f"{tmp_prefix}{uuid.uuid4().hex}"
        try:
            fd = os.open(
                self._tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=self._folder,
            )
        except BaseException:
            os.close(self._folder)
            raise
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def commit(self, *, exclusive: bool = False, name: str | None = None) -> None:
        """Sync the bytes and give the file its name (or ``name``, in the same folder).

        ``exclusive`` refuses (FileExistsError) when the name is taken.
        """
        if name is not None:
            split_below(name)
            if "/" in name:
                raise UnsafePathError(f"{name!r} is not a name within {self.where}'s folder")
            self.name = name
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if exclusive:
                try:
                    os.link(self._tmp, self.name, src_dir_fd=self._folder, dst_dir_fd=self._folder)
                except FileExistsError:
                    raise
                except OSError:  # no hard links (FAT32, exFAT media): check, then rename
                    if _exists(self.name, self._folder):
                        raise FileExistsError(errno.EEXIST, "exists", self.where) from None
                    os.replace(self._tmp, self.name, src_dir_fd=self._folder, dst_dir_fd=self._folder)
                else:
                    os.unlink(self._tmp, dir_fd=self._folder)
            else:
                os.replace(self._tmp, self.name, src_dir_fd=self._folder, dst_dir_fd=self._folder)
            fsync_folder(self._folder)
        except IsADirectoryError:
            self.discard()
            raise _refused(self.where, "a folder", "file") from None
        except BaseException:
            self.discard()
            raise
        os.close(self._folder)
        self._folder = -1

    def discard(self) -> None:
        if self._folder < 0:
            return
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp, dir_fd=self._folder)
        os.close(self._folder)
        self._folder = -1


def _exists(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def write_below(root: str, relpath: str, data: bytes, *, exclusive: bool = False) -> None:
    """Temp name, fsync, rename below ``root``: a reader sees the old file or the new one, never half."""
    new = NewFile(root, relpath)
    try:
        new.file.write(data)
    except BaseException:
        new.discard()
        raise
    new.commit(exclusive=exclusive)


def check_root(root: str) -> None:
    """Refuse a root that is not a folder before anything is read from it (missing: FileNotFoundError)."""
    os.close(open_root(root))
