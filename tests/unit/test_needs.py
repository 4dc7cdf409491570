"""A missing real part skips a test locally and fails it in CI."""

from __future__ import annotations

import pytest

from tests.support import needs


def test_missing_part_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(needs, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="skopeo is not installed"):
        needs.require(False, "skopeo is not installed", fix="make install")


def test_missing_part_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(needs, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="skopeo is not installed: CI runs every test"):
        needs.require(False, "skopeo is not installed", fix="make install")


def test_present_part_neither_skips_nor_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    for ci in (False, True):
        monkeypatch.setattr(needs, "IN_CI", ci)
        assert needs.require(True, "skopeo", fix="make install") is None
