"""The get side's destination and a pipeline author's params, attacked.

Concourse hands ``in`` an empty folder, but ``offline-bundle unpack --dest`` may be given any
folder: one where links were planted beforehand, or where an aborted get left its staging folder.
Nothing may be written through a planted link, and hostile params are refused with one line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_cli, write_yaml
from tests.support.forge import ForgedPart, Forger, file_entry, file_member, tar_of
from tests.support.sides import Sides, assert_clean_failure, small_tree

pytestmark = pytest.mark.integration


@pytest.fixture
def bundle(sides: Sides, tmp_path: Path) -> Sides:
    sides.put(small_tree(tmp_path / "build", p="payload"), {"parts": [{"name": "p", "path": "p"}], "version": "1"})
    return sides


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    where = tmp_path / "outside"
    where.mkdir()
    (where / "keep").write_text("untouched")
    return where


def unpack(sides: Sides, tmp_path: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    config = write_yaml(tmp_path / "reader.yml", sides.get_source)
    return run_cli("unpack", "--config", config, "--version", "1", dest)


def outside_untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["keep"]
    assert (outside / "keep").read_text() == "untouched"


@pytest.mark.parametrize("planted", ["p", "version", "SHA256SUMS", "manifest.json", "manifest.json.asc"])
def test_a_link_planted_in_the_destination_is_never_written_through(
    bundle: Sides, tmp_path: Path, outside: Path, planted: str
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside if planted == "p" else outside / "keep", dest / planted)
    proc = unpack(bundle, tmp_path, dest)
    assert proc.returncode == 1, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: destination {dest} already holds {planted}; give an empty folder"
    ]
    outside_untouched(outside)
    assert os.listdir(dest) == [planted]


def test_the_destination_itself_a_link_to_a_file_is_refused(bundle: Sides, tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "dest"
    os.symlink(outside / "keep", dest)
    proc = unpack(bundle, tmp_path, dest)
    assert_clean_failure(proc, "is a file, not a folder")
    outside_untouched(outside)


def test_staging_left_by_an_aborted_get_does_not_confuse_the_next(bundle: Sides, tmp_path: Path, outside: Path) -> None:
    """An earlier get killed with SIGKILL left its staging folder; a planted link wears the same prefix."""
    dest = tmp_path / "dest"
    (dest / ".offline-bundle-staging-0123").mkdir(parents=True)
    (dest / ".offline-bundle-staging-0123" / "p").mkdir()
    (dest / ".offline-bundle-staging-0123" / "p" / "p.txt").write_text("stale")
    os.symlink(outside, dest / ".offline-bundle-staging-4567")
    proc = unpack(bundle, tmp_path, dest)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "p" / "p.txt").read_text() == "payload"
    assert (dest / "version").read_text() == "1"
    outside_untouched(outside)
    assert sorted(n for n in os.listdir(dest) if n.startswith(".offline-bundle-staging-")) == [
        ".offline-bundle-staging-0123",
        ".offline-bundle-staging-4567",
    ], "the next get leaves an earlier one's folders to the operator, and adds none of its own"


def test_names_cannot_inject_sha256sums_lines(sides: Sides, tmp_path: Path) -> None:
    """A name with two spaces, a '*', a leading '\\' or one that looks like another line: every line
    still checks with ``sha256sum --strict -c`` and names exactly the file it hashes."""
    forger = Forger(sides.client(), sides.bucket, sides.keys.signer, sides.keys.recipient)
    names = ["a  etc", "*b", " c", "d e f  0000", "e\u2028f"]
    members = [file_member(n, n.encode()) for n in names]
    forger.bundle("1", [ForgedPart("p", tar_of(members), [file_entry(n, n.encode()) for n in names])])
    dest = tmp_path / "dest"
    sides.get("1", dest)
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(ln.rsplit(": ", 1)[0] for ln in check.stdout.split("\n") if ln) == sorted(f"p/{n}" for n in names)


@pytest.mark.parametrize("parts", [["p", "p"], ["p", "P"], ["P"]])
def test_in_with_repeated_or_case_twin_parts_gets_each_part_once_or_refuses(
    bundle: Sides, tmp_path: Path, parts: list[str]
) -> None:
    dest = tmp_path / "dest"
    proc = bundle.in_("1", dest, params={"parts": parts})
    if "P" in parts:
        assert_clean_failure(proc, "names P, not in", dest)
    else:
        assert proc.returncode == 0, proc.stderr
        assert sorted(os.listdir(dest)) == ["SHA256SUMS", "manifest.json", "manifest.json.asc", "p", "version"]


def test_out_refuses_parts_whose_names_differ_only_in_case(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "build", a="1", b="2")
    proc = sides.out(build, {"parts": [{"name": "app", "path": "a"}, {"name": "App", "path": "b"}], "version": "1"})
    assert_clean_failure(proc, "used by two parts")
    assert proc.returncode == 1
    assert sides.keys_under("") == []


@pytest.mark.parametrize("version", ["1\n2", "1\r", "../1", "1/2", "-1", ".1", "1 ", "\u0661"])
def test_out_refuses_a_version_no_get_could_read(sides: Sides, tmp_path: Path, version: str) -> None:
    build = small_tree(tmp_path / "build", p="1")
    proc = sides.out(build, {"parts": [{"name": "p", "path": "p"}], "version": version})
    assert_clean_failure(proc, "version")
    assert proc.returncode == 1
    assert sides.keys_under("") == []


def test_out_with_a_version_file_that_is_a_fifo_neither_hangs_nor_uploads(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "build", p="1")
    os.mkfifo(build / "number")
    proc = sides.out(build, {"parts": [{"name": "p", "path": "p"}], "version_file": "number"}, timeout=60)
    assert_clean_failure(proc, "number")
    assert proc.returncode == 1
    assert sides.keys_under("") == []


def test_out_with_a_huge_version_file_refuses_without_reading_it_all(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "build", p="1")
    with open(build / "number", "wb") as f:
        f.truncate(8 << 30)  # sparse: 8 GiB that cost no disk
    proc = sides.out(build, {"parts": [{"name": "p", "path": "p"}], "version_file": "number"}, timeout=60)
    assert_clean_failure(proc, "number")
    assert proc.returncode == 1
    assert sides.keys_under("") == []


@pytest.mark.parametrize("version", ["1\n", "1\n2", "../1", "1/../1", ""])
def test_in_refuses_a_version_string_that_is_not_a_name(bundle: Sides, tmp_path: Path, version: str) -> None:
    """A version with a line break or a path in it names no commit object; nothing is fetched or written."""
    dest = tmp_path / "dest"
    proc = bundle.in_(version, dest)
    assert_clean_failure(proc, "version", dest)
    assert proc.returncode == 1
