"""A real part a test needs (a registry, skopeo, the pipeline schema): skipped locally, fatal in CI.

Locally a missing tool should not stop a developer from running the rest; in CI (``CI`` set to
true) a skip would let a whole suite of real-part tests vanish unnoticed from a green run, so
there it fails with what is missing and what installs it.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(present: bool, what: str, *, fix: str) -> None:
    """Skip (locally) or fail (in CI) the calling test unless ``present``."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{what}: CI runs every test with its real parts ({fix})", pytrace=False)
    pytest.skip(f"{what} ({fix})")
