"""How the package speaks while it works: one ``Log`` type, one redacting stderr writer.

Every module takes a ``Log`` instead of printing, so the Concourse scripts can keep stdout for the
one JSON answer and the CLI can keep it for results; whatever reaches stderr has passed the
``Redactor``, so no line carries a secret value.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]


class Redactor:
    """Replaces every known secret value (and each of its lines, for armoured keys) with ***."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, values: list[str]) -> None:
        for v in values:
            for piece in [v, *v.splitlines()]:
                piece = piece.strip()
                if len(piece) >= 4 and not piece.startswith("-----") and piece not in self._secrets:
                    self._secrets.append(piece)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


def stderr_log(redact: Redactor) -> Log:
    """A ``Log`` writing redacted lines to stderr, flushed at once (Concourse shows them live)."""

    def log(msg: str) -> None:
        sys.stderr.write(redact(msg) + "\n")
        sys.stderr.flush()

    return log
