"""files.write_atomic: a whole file or none, at a plain path or below a root that may hold planted links."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline_bundle.core.files import write_atomic
from offline_bundle.core.safe_fs import UnsafePathError


def test_a_plain_path_is_replaced_whole_and_no_temporary_file_stays(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(str(target), "new\n")
    assert target.read_bytes() == b"new\n"
    write_atomic(str(target), b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_link_at_the_final_name_is_replaced_not_written_through(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "parts.json"
    link.symlink_to(secret)
    write_atomic(str(link), "[]\n")
    assert not link.is_symlink() and link.read_text() == "[]\n"
    assert secret.read_bytes() == b"secret"


def test_below_a_root_no_link_is_followed_and_exclusive_refuses_a_taken_name(tmp_path: Path) -> None:
    root, outside = tmp_path / "medium", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "linked").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        write_atomic("linked/file", b"x", root=str(root))
    assert not list(outside.iterdir())
    write_atomic("a/b/file", b"made", root=str(root))
    with pytest.raises(FileExistsError):
        write_atomic("a/b/file", b"again", root=str(root), exclusive=True)
    assert (root / "a" / "b" / "file").read_bytes() == b"made"
