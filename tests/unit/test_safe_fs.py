"""safe_fs on real folders, links, pipes and long paths: nothing below the root is reached through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offline_bundle.core import safe_fs
from offline_bundle.core.safe_fs import UnsafePathError


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A root with ``a/b/file``, and a folder outside it holding ``secret`` and ``b/file``."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_bytes(b"inside")
    (outside / "b").mkdir(parents=True)
    (outside / "secret").write_bytes(b"secret")
    (outside / "b" / "file").write_bytes(b"outside")
    return root, outside


def test_a_regular_file_below_the_root_is_read(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    assert safe_fs.read_below(str(root), "a/b/file", 100) == b"inside"
    assert safe_fs.read_below(str(root), "a/b/missing", 100) is None
    assert safe_fs.regular_size_below(str(root), "a/b/file") == 6


@pytest.mark.parametrize("link", ["a", "a/b", "a/b/file"])
def test_a_link_on_any_component_is_refused(tree: tuple[Path, Path], link: str) -> None:
    root, outside = tree
    path = root / link
    target = {"a": outside, "a/b": outside / "b", "a/b/file": outside / "secret"}[link]
    os.rename(path, root / "moved")
    path.symlink_to(target)
    with pytest.raises(UnsafePathError, match=f"{path} is a symbolic link"):
        safe_fs.read_below(str(root), "a/b/file", 100)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_fs.open_below(str(root), "a/b/file")


def test_the_root_itself_may_be_a_link(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = tree
    (tmp_path / "mounted").symlink_to(root)
    assert safe_fs.read_below(str(tmp_path / "mounted"), "a/b/file", 100) == b"inside"


@pytest.mark.parametrize("relpath", ["../outside/secret", "a/../../outside/secret", "/etc/passwd", "a//b", "a/./b", ""])
def test_a_path_that_could_leave_the_root_is_refused(tree: tuple[Path, Path], relpath: str) -> None:
    root, _ = tree
    with pytest.raises(UnsafePathError, match="does not name a place below"):
        safe_fs.open_below(str(root), relpath)


def test_a_pipe_is_refused_without_being_opened(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.mkfifo(root / "a" / "pipe")  # opening it for reading would block until a writer comes
    with pytest.raises(UnsafePathError, match="is a named pipe where a file was expected"):
        safe_fs.open_below(str(root), "a/pipe")


def test_a_folder_where_a_file_belongs_and_a_file_where_a_folder_belongs_are_refused(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    with pytest.raises(UnsafePathError, match="is a folder where a file was expected"):
        safe_fs.open_below(str(root), "a/b")
    with pytest.raises(UnsafePathError, match="is a file where a folder was expected"):
        safe_fs.open_below(str(root), "a/b/file/x")


def test_paths_past_path_max_work_below_the_root_and_a_root_past_it_is_one_clear_error(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    names = [f"{i:02d}" + "x" * 240 for i in range(20)]
    for name in names:
        os.mkdir(name, dir_fd=fd)
        nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    deep = "/".join(names)
    assert len(str(tmp_path / deep)) > 4096
    safe_fs.write_below(str(tmp_path), f"{deep}/file", b"far down")
    assert safe_fs.read_below(str(tmp_path), f"{deep}/file", 100) == b"far down"
    assert [e.relpath for e in safe_fs.walk_below(str(tmp_path))] == [f"{deep}/file"]
    with pytest.raises(UnsafePathError, match="longer than the file system allows"):
        safe_fs.check_root(str(tmp_path / deep))
    with pytest.raises(UnsafePathError, match="longer than the file system allows"):
        safe_fs.open_below(str(tmp_path), "y" * 300)


def test_the_walk_lists_links_without_entering_them_and_refuses_a_tree_too_deep(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "a" / "to-outside").symlink_to(outside)
    (root / "a" / "to-secret").symlink_to(outside / "secret")
    found = {e.relpath: e.stat for e in safe_fs.walk_below(str(root))}
    assert sorted(found) == ["a/b/file", "a/to-outside", "a/to-secret"]
    assert list(safe_fs.walk_below(str(root), "missing")) == []
    with pytest.raises(UnsafePathError, match="symbolic link"):
        list(safe_fs.walk_below(str(root), "a/to-outside"))

    deep = root / "d"
    deep.mkdir()
    for _ in range(safe_fs.MAX_DEPTH + 1):
        deep = deep / "d"
        deep.mkdir()
    with pytest.raises(UnsafePathError, match="nested more than"):
        list(safe_fs.walk_below(str(root)))


def test_writing_replaces_a_planted_link_and_never_writes_through_a_linked_folder(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "a" / "b" / "file").unlink()
    (root / "a" / "b" / "file").symlink_to(outside / "secret")
    safe_fs.write_below(str(root), "a/b/file", b"new")
    assert (root / "a" / "b" / "file").read_bytes() == b"new" and not (root / "a" / "b" / "file").is_symlink()
    assert (outside / "secret").read_bytes() == b"secret"

    (root / "c").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_fs.write_below(str(root), "c/secret", b"overwritten")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_fs.write_below(str(root), "c/new/file", b"x")
    assert (outside / "secret").read_bytes() == b"secret" and not (outside / "new").exists()

    safe_fs.write_below(str(root), "e/f/g", b"made")  # missing folders are made
    with pytest.raises(FileExistsError):
        safe_fs.write_below(str(root), "e/f/g", b"again", exclusive=True)
    assert (root / "e" / "f" / "g").read_bytes() == b"made"
    assert not [p for p in (root / "e" / "f").iterdir() if p.name.startswith(".tmp-")]


def test_removing_takes_the_link_away_and_never_what_it_points_to(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "a" / "gone").symlink_to(outside)
    safe_fs.remove_below(str(root), "a/gone")
    assert not (root / "a" / "gone").is_symlink() and (outside / "secret").exists()

    (root / "a" / "b" / "inner").symlink_to(outside)
    safe_fs.remove_below(str(root), "a/b")  # a tree holding a link: the link goes, its target stays
    assert not (root / "a" / "b").exists() and (outside / "secret").exists() and (outside / "b" / "file").exists()
    safe_fs.remove_below(str(root), "a/nothing")
