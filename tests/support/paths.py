"""Where things are, independent of the directory pytest was started from."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
ASSETS_DIR: Path = REPO_ROOT / "assets"


def venv_bin() -> Path:
    """The bin/ directory of the venv running the tests.

    The interpreter is the venv's own python, so its directory is the venv's
    bin/ (``sys.executable`` is deliberately not resolved: resolving would
    follow the symlink to the base interpreter outside the venv).  Falls back
    to the repo's ``.venv/bin`` when tests run under some other interpreter.
    """
    here = Path(sys.executable).parent
    if (here / "weed").exists() or (here / "offline-bundle").exists():
        return here
    return REPO_ROOT / ".venv" / "bin"


def venv_tool(name: str) -> Path:
    """Path of a console tool installed into the venv (weed, offline-bundle...).

    Raises a message that says how to fix it, because the usual cause is a
    venv that predates a dependency change.
    """
    for candidate in (venv_bin() / name, REPO_ROOT / ".venv" / "bin" / name):
        if candidate.exists():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"{name!r} not found in {venv_bin()} or on PATH; run `make install`")
