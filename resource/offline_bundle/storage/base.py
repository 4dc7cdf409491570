"""What the data path needs from a blobstore, and how large its pieces are.

Keeping the data path unaware of where bytes live lets ``pack``/``unpack`` work on removable media
with the very code Concourse runs against S3, and lets unit tests use a folder.
"""

from __future__ import annotations

import builtins
import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from offline_bundle.errors import StoreError

MiB = 1 << 20
MIN_PART = 8 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
PART_HEADROOM = 9_000  # leave room under S3's 10,000-part limit for estimates that run short
DEFAULT_MEMORY_BUDGET = 64 * MiB
MAX_CONCURRENCY = 4
COMMIT_MAX_BYTES = 64 * MiB


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    # User metadata; only ``head`` of an S3 store fills it (a listing does not carry it).
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)


def choose_part_size(estimated_bytes: int) -> int:
    """Smallest whole-MiB part size that keeps ``estimated_bytes`` under ~9,000 parts (S3 allows 10,000)."""
    need = -(-max(estimated_bytes, 1) // PART_HEADROOM)
    size = max(MIN_PART, -(-need // MiB) * MiB)
    return min(size, MAX_PART)


def choose_concurrency(part_size: int, budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Parts in flight that fit the memory budget.

    Besides the parts in flight, one part is being filled and one may wait for a free slot, so the
    payload buffers take at most ``(concurrency + 2) * part_size``; at least one part is in flight.
    """
    return max(1, min(MAX_CONCURRENCY, budget // part_size - 2))


@dataclass(frozen=True)
class Upload:
    """An incomplete multipart upload (a leftover of a put that died)."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True)
class Written:
    key: str
    size: int
    sha256: str


class Store(ABC):
    """What the data path needs from a blobstore."""

    description: str
    memory_budget: int = DEFAULT_MEMORY_BUDGET  # payload buffers of all writers in flight together

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None: ...

    @abstractmethod
    def get_bytes(self, key: str, limit: int = COMMIT_MAX_BYTES) -> bytes | None: ...

    @abstractmethod
    def put_bytes(
        self, key: str, data: bytes, *, only_if_absent: bool = False, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Write a small object; ``metadata`` is kept where the store can keep it (S3 user metadata).

        ``only_if_absent``: an object already at ``key`` raises ``AlreadyExists`` and stays as it is.
        """

    @abstractmethod
    def open_read(self, key: str, size: int, on_bytes: Callable[[int], None] | None = None) -> io.RawIOBase: ...

    @abstractmethod
    def writer(
        self,
        key: str,
        estimated_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
        *,
        memory_budget: int | None = None,
    ) -> BlobWriter:
        """A writer whose bytes appear at ``key`` only once it is closed; abort leaves nothing there.

        ``memory_budget``: this writer's share of the store's, when several write at once.
        """

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def list_uploads(self, prefix: str) -> builtins.list[Upload]:  # ``list`` is a method here
        """Incomplete multipart uploads under ``prefix`` (none for stores without them)."""
        return []

    def abort_upload(self, key: str, upload_id: str) -> None:  # noqa: B027 - optional for stores without uploads
        """Abort one incomplete upload."""

    def open_range(
        self, key: str, size: int, start: int, end: int, on_bytes: Callable[[int], None] | None = None
    ) -> io.RawIOBase:
        """Bytes ``[start, end)`` of an object of ``size`` bytes: export writes media pieces from ranges."""
        raise StoreError(f"{self.description} cannot read byte ranges")


class BlobWriter(ABC):
    """Takes a stream of bytes, hashes it once (the SHA-256 goes into the manifest), stores it at its key."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def close(self) -> Written: ...

    @abstractmethod
    def abort(self) -> None: ...
