"""Bases for the package's read-only raw streams, each defined by its ``read`` alone.

``io.RawIOBase`` builds ``read`` from ``readinto``; every stream here works the other way round (its
bytes come from a queue, a piece, a check), so ``readinto`` is built from ``read`` once, here.
"""

from __future__ import annotations

import io
from abc import abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ReadStream(io.RawIOBase):
    """A readable raw stream whose ``readinto`` copies what its ``read`` returns."""

    def readable(self) -> bool:
        return True

    @abstractmethod
    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class SeekableStream(ReadStream):
    """A ``ReadStream`` of ``_length`` bytes at position ``_pos``: seeks stay within ``[0, _length]``."""

    _pos: int
    _length: int

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(0, base + offset), self._length)
        return self._pos
