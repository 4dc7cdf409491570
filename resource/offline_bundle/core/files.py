"""Whole files replaced at once: written under a temporary name in their folder, synced, renamed.

A reader (or a run resumed after a kill) sees the old file or the new one, never half of one, and a
medium pulled out right after the write still holds it. Every such write goes through here; the
temporary file and the rename are ``safe_fs.NewFile``'s, which reaches the folder without following
a link, so a link planted at the final name is replaced, never written through.
"""

from __future__ import annotations

import os

from offline_bundle.core import safe_fs


def write_atomic(path: str, data: bytes | str, *, root: str | None = None, exclusive: bool = False) -> None:
    """Replace the file at ``path`` with ``data`` (text is written as UTF-8, line ends untouched).

    With ``root``, ``path`` is relative to it and no link below ``root`` is followed: a medium or a
    folder store, which someone else may have written. Without, ``path`` is the operator's own and
    only its last component is confined. ``exclusive`` refuses (FileExistsError) a name that is taken.
    """
    if root is None:
        root, path = os.path.split(os.path.abspath(path))
    safe_fs.write_below(root, path, data.encode("utf-8") if isinstance(data, str) else data, exclusive=exclusive)
