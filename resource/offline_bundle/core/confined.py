"""Reading the build folder without ever leaving it.

The build folder (``$1`` of ``out``) is filled by earlier steps and may hold anything, symlinks to
``/`` or to someone's key included. Resolving a path string and checking it afterwards leaves a
window in which a folder can be swapped for a link, so every path here is opened one component at
a time relative to a descriptor of the build folder, with ``O_NOFOLLOW``: a symlink anywhere on the
way fails the open instead of being followed. Symlinks themselves are only ever read as links
(``readlink``), never through.
"""

from __future__ import annotations

import errno
import fnmatch
import io
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from offline_bundle.errors import ConfigError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a regular file swapped for a FIFO after planning must not hang the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_MAGIC = frozenset("*?[")
_DIR_CACHE = 256  # open folder descriptors kept; entries come sorted, so neighbours share folders


class BuildDirError(ConfigError):
    """A path under the build folder cannot be read without leaving it, or changed while it was read."""


def _split(rel: str) -> list[str]:
    return [c for c in rel.split("/") if c not in ("", ".")]


class BuildDir:
    """An open build folder: lists, stats and opens paths below it, never through a symlink.

    The folder itself is opened once (following links: it is what the operator named); below it,
    a component that is a symlink ends the walk with a ``BuildDirError`` naming the link.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        try:
            self._root = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise BuildDirError(f"build folder {self.path} cannot be opened: {e.strerror}") from None
        self._dirs: dict[str, int] = {}

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def __enter__(self) -> BuildDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ folders

    def _refuse_link(self, parent_fd: int, name: str, rel: str, what: str) -> BuildDirError:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            return BuildDirError(
                f"{what}: {rel!r} is a symlink on the way; links are packed as links, never followed "
                "(name the folder it points to instead)"
            )
        return BuildDirError(f"{what}: {rel!r} is not a folder (it changed while it was read?)")

    def dir_fd(self, rel: str, what: str = "build folder") -> int:
        """A descriptor of folder ``rel`` (owned by this object: do not close it)."""
        cached = self._dirs.get(rel)  # (planned paths are normalised: the common case needs no split)
        if cached is not None:
            return cached
        parts = _split(rel)
        key = "/".join(parts)
        if not key:
            return self._root
        cached = self._dirs.get(key)
        if cached is not None:
            return cached
        parent_rel, _, name = key.rpartition("/")
        parent = self.dir_fd(parent_rel, what)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise self._refuse_link(parent, name, key, what) from None
            raise BuildDirError(f"{what}: {key!r} cannot be opened: {e.strerror}") from None
        if len(self._dirs) >= _DIR_CACHE:
            for old in self._dirs.values():
                os.close(old)
            self._dirs.clear()
        self._dirs[key] = fd
        return fd

    def lstat(self, rel: str, what: str = "build folder") -> os.stat_result | None:
        """The node at ``rel`` itself (a link is not followed); None when it does not exist."""
        parent_rel, _, name = "/".join(_split(rel)).rpartition("/")
        if not name:
            return os.fstat(self._root)
        try:
            return os.stat(name, dir_fd=self.dir_fd(parent_rel, what), follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise BuildDirError(f"{what}: {rel!r} cannot be read: {e.strerror}") from None

    def readlink(self, rel: str, what: str = "build folder") -> str:
        parent_rel, _, name = "/".join(_split(rel)).rpartition("/")
        try:
            return os.readlink(name, dir_fd=self.dir_fd(parent_rel, what))
        except OSError as e:
            raise BuildDirError(f"{what}: symlink {rel!r} cannot be read: {e.strerror}") from None

    def scandir(self, rel: str, what: str = "build folder") -> list[tuple[str, os.stat_result]]:
        """The children of folder ``rel`` with their own (not followed) status, sorted by name."""
        try:
            with os.scandir(self.dir_fd(rel, what)) as it:  # (a duplicate of the descriptor, rewound)
                out = [(d.name, d.stat(follow_symlinks=False)) for d in it]
        except OSError as e:
            raise BuildDirError(f"{what}: folder {rel!r} cannot be listed: {e.strerror}") from None
        return sorted(out)

    def walk(self, rel: str, what: str = "build folder") -> Iterator[tuple[str, os.stat_result]]:
        """Every node below folder ``rel`` (path relative to ``rel``), depth first, links not entered."""
        for name, st in self.scandir(rel, what):
            yield name, st
            if stat.S_ISDIR(st.st_mode):
                child = f"{rel}/{name}" if rel else name
                fd = self.dir_fd(child, what)
                now = os.fstat(fd)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    raise BuildDirError(f"{what}: folder {child!r} was replaced while it was read")
                for sub, sub_st in self.walk(child, what):
                    yield f"{name}/{sub}", sub_st

    # -------------------------------------------------------------------------------------- files

    def open_file(self, rel: str, what: str = "build folder", same_as: tuple[int, int] | None = None) -> BinaryIO:
        """Open regular file ``rel`` for reading; ``same_as`` (device, inode) must still be the file there."""
        parent_rel, _, name = rel.rpartition("/")  # (dir_fd normalises the folder part)
        parent = self.dir_fd(parent_rel, what)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise BuildDirError(
                    f"{what}: {rel!r} became a symlink after it was listed; it is not followed"
                ) from None
            raise BuildDirError(f"{what}: {rel!r} cannot be read: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BuildDirError(f"{what}: {rel!r} is no longer a regular file")
            if same_as is not None and (st.st_dev, st.st_ino) != same_as:
                raise BuildDirError(f"{what}: {rel!r} was replaced by another file while it was packed")
            # (O_NONBLOCK stays: it changes nothing for a regular file, and clearing it costs two calls)
            return io.FileIO(fd, "r")
        except BaseException:
            os.close(fd)
            raise

    # --------------------------------------------------------------------------------------- glob

    def glob(self, pattern: str, what: str = "build folder") -> list[tuple[str, os.stat_result]]:
        """``glob.glob(pattern, recursive=True, include_hidden=True)`` confined to the build folder.

        The difference is what happens at a symlink: ``glob`` lists and recurses through it (out of
        the folder, or round a loop); here a link is a match like a file, a link that a wildcard
        would have to enter is skipped, and a link that the pattern names on the way is refused.
        """
        dir_only = pattern.endswith("/")
        comps = _split(pattern)
        found: list[tuple[str, os.stat_result]] = []
        self._glob(self._root_stat(), "", comps, dir_only, what, found)
        seen: set[str] = set()
        out = []
        for rel, st in sorted(found, key=lambda m: m[0]):
            if rel not in seen:
                seen.add(rel)
                out.append((rel, st))
        return out

    def _root_stat(self) -> os.stat_result:
        return os.fstat(self._root)

    def _glob(
        self,
        st: os.stat_result,
        rel: str,
        comps: list[str],
        dir_only: bool,
        what: str,
        out: list[tuple[str, os.stat_result]],
        named: bool = True,
    ) -> None:
        if not comps:
            if rel and (not dir_only or not stat.S_ISREG(st.st_mode)):
                out.append((rel, st))
            return
        if stat.S_ISLNK(st.st_mode) and named:
            raise BuildDirError(
                f"{what}: {rel!r} is a symlink where the path needs a folder; links are packed as links, "
                "never followed (name the folder it points to instead)"
            )
        if not stat.S_ISDIR(st.st_mode):
            return
        head, rest = comps[0], comps[1:]
        if head == "**":
            self._glob_any_depth(st, rel, rest, dir_only, what, out)
        elif not any(c in _MAGIC for c in head):
            child = self.lstat(_join(rel, head), what)
            if child is not None:
                self._glob(child, _join(rel, head), rest, dir_only, what, out)
        else:
            for name, child in self.scandir(rel, what):
                if fnmatch.fnmatchcase(name, head):
                    self._glob(child, _join(rel, name), rest, dir_only, what, out, named=False)

    def _glob_any_depth(
        self,
        st: os.stat_result,
        rel: str,
        rest: list[str],
        dir_only: bool,
        what: str,
        out: list[tuple[str, os.stat_result]],
    ) -> None:
        """``**`` at folder ``rel``: zero folders (the rest applies here), then once for every folder
        below (links not entered); as the last component, everything below."""
        if not rest:
            if rel:
                out.append((rel, st))
            for sub, sub_st in self.walk(rel, what):
                if not dir_only or stat.S_ISDIR(sub_st.st_mode) or stat.S_ISLNK(sub_st.st_mode):
                    out.append((_join(rel, sub), sub_st))
            return
        self._glob(st, rel, rest, dir_only, what, out)
        for sub, sub_st in self.walk(rel, what):
            if stat.S_ISDIR(sub_st.st_mode):
                self._glob(sub_st, _join(rel, sub), rest, dir_only, what, out)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name
