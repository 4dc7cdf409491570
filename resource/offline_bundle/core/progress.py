"""Progress with throughput on stderr for transfers of more than a few MB (docs/reference.md).

Counts only bytes that are done (a part acknowledged, a chunk verified), so a retry never makes
the figure go backwards.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

MiB = 1 << 20
QUIET_BELOW = 8 * MiB


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    def __init__(self, label: str, total: int, *, stream: TextIO | None = None, interval: float = 2.0) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream or sys.stderr
        self._interval = interval
        self._start = time.monotonic()
        self._last = self._start
        self._lock = threading.Lock()
        self._enabled = total >= QUIET_BELOW

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self._enabled and now - self._last >= self._interval:
                self._last = now
                self._print(now)

    def _print(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-6)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        self._stream.write(
            f"{self.label}: {human(self.done)} of {human(self.total)}{pct}, {human(self.done / elapsed)}/s\n"
        )
        self._stream.flush()

    def finish(self) -> None:
        if self._enabled:
            with self._lock:
                self._print(time.monotonic())
