"""A bounded in-memory pipe between a pushing producer (gpg's output) and a pulling consumer (tar).

python-gnupg hands decrypted data to a callback while ``tarfile`` wants to read: this joins them
with a small queue, so memory stays bounded and either side can stop the other on an error.
"""

from __future__ import annotations

import contextlib
import queue

from offline_bundle.core.streams import ReadStream
from offline_bundle.errors import BundleError


class PipeClosed(BundleError):
    """The other side of the pipe stopped."""


class ChunkPipe(ReadStream):
    POLL = 0.2

    # gpg's output comes in chunks of up to 1 MiB: 16 of them waited here for the whole of a get of
    # 100,000 small files (the extraction is the slower side), 8 MB more than 8 with no gain in
    # speed (a 512 MiB part took the same time with 4 or 16; 4 looked a little slower for small files).
    def __init__(self, max_chunks: int = 8) -> None:
        self._q: queue.Queue[bytes | None] = queue.Queue(max_chunks)
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._aborted = False

    def _put(self, item: bytes | None) -> None:
        while True:
            if self._aborted:
                raise PipeClosed("the reader stopped")
            try:
                self._q.put(item, timeout=self.POLL)
                return
            except queue.Full:
                continue

    def write_chunk(self, chunk: bytes) -> None:
        self._put(chunk)

    def close_writer(self) -> None:
        with contextlib.suppress(PipeClosed):
            self._put(None)

    def abort(self) -> None:
        """Reader side: stop taking data; the writer's next write raises."""
        self._aborted = True
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        while self._pos >= len(self._buf) and not self._eof:
            item = self._q.get()
            if item is None:
                self._eof = True
            else:
                self._buf, self._pos = item, 0
        if self._pos == 0 and size >= len(self._buf):
            out, self._buf = self._buf, b""
            return out
        out = bytes(memoryview(self._buf)[self._pos : self._pos + size])
        self._pos += len(out)
        return out
