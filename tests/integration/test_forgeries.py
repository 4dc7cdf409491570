"""Bundles signed by the TRUSTED key but carrying bad archives or manifests: only our own checks stop them.

Each case is built by hand (tests/support/forge.py), encrypted to the real recipient and clear-signed
with the trusted signer, then fetched with assets/in. Each must fail with one clear line, leave the
destination empty and write nothing outside it.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.support.forge import ForgedPart, Forger, file_entry, file_member, node_member, tar_of
from tests.support.sides import Sides, assert_clean_failure

pytestmark = pytest.mark.integration


def test_a_well_formed_forgery_is_accepted(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    """The control: the forging kit makes bundles the get side accepts, so refusals below are real."""
    data = b"fine"
    forger.bundle("1", [ForgedPart("p", tar_of([file_member("ok.txt", data)]), [file_entry("ok.txt", data)])])
    sides.get("1", tmp_path / "dest")
    assert (tmp_path / "dest" / "p" / "ok.txt").read_bytes() == data


def escape_target() -> str:
    return f"/tmp/offline-bundle-escape-{uuid.uuid4().hex}"


CASES = {
    "absolute path": (
        lambda t: [file_member(t, b"x")],
        lambda t: [file_entry(os.path.basename(t), b"x")],
        "unsafe path",
    ),
    "dot-dot path": (
        lambda t: [file_member("../../../.." + t, b"x")],
        lambda t: [file_entry("x", b"x")],
        "unsafe path",
    ),
    "symlink out of the part": (
        lambda t: [node_member("link", tarfile.SYMTYPE, "../../../../../.." + t)],
        lambda t: [{"path": "link", "type": "symlink", "mode": "0777", "mtime": 0, "target": "inside"}],
        "target differs",
    ),
    "hardlink out of the part": (
        lambda t: [node_member("x", tarfile.LNKTYPE, t)],
        lambda t: [file_entry("x", b"")],
        "hardlink in the archive",
    ),
    "device node": (
        lambda t: [node_member("dev", tarfile.CHRTYPE)],
        lambda t: [file_entry("dev", b"")],
        "special in the archive",
    ),
    "fifo": (lambda t: [node_member("fifo", tarfile.FIFOTYPE)], lambda t: [file_entry("fifo", b"")], "special"),
    "duplicate entry": (
        lambda t: [file_member("x", b"1"), file_member("x", b"1")],
        lambda t: [file_entry("x", b"1")],
        "appears twice",
    ),
    "file larger than declared": (
        lambda t: [file_member("x", b"12345")],
        lambda t: [file_entry("x", b"1")],
        "5 bytes in the archive, 1 in the manifest",
    ),
    "more files than declared": (
        lambda t: [file_member("x", b"1"), file_member("extra", b"2")],
        lambda t: [file_entry("x", b"1")],
        "not in the signed manifest",
    ),
    "fewer files than declared": (
        lambda t: [file_member("x", b"1")],
        lambda t: [file_entry("x", b"1"), file_entry("y", b"2")],
        "missing from the archive",
    ),
    "content differs from the manifest": (
        lambda t: [file_member("x", b"evil")],
        lambda t: [file_entry("x", b"good")],
        "SHA-256 of 'x' differs",
    ),
    "write through a symlinked folder": (
        lambda t: [
            node_member("d", tarfile.SYMTYPE, "real"),
            node_member("real", tarfile.DIRTYPE),
            file_member("d/x", b"1"),
        ],
        lambda t: [
            {"path": "d", "type": "symlink", "mode": "0777", "mtime": 0, "target": "real"},
            {"path": "real", "type": "dir", "mode": "0755", "mtime": 0},
            file_entry("real/x", b"1"),
        ],
        "not in the signed manifest",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forged_archives_are_refused(sides: Sides, forger: Forger, tmp_path: Path, case: str) -> None:
    make_members, make_files, words = CASES[case]
    target = escape_target()
    forger.bundle("1", [ForgedPart("p", tar_of(make_members(target)), make_files(target))])
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("1", dest), words, dest)
    assert not os.path.lexists(target), "something was written outside the destination"


def test_non_utf8_names_are_refused(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    member = file_member("x", b"1")
    member.raw_name = b"bad-\xff-name"
    forger.bundle("1", [ForgedPart("p", tar_of([member]), [file_entry("x", b"1")])])
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("1", dest), "part p", dest)


@pytest.mark.parametrize("reserved", ["SHA256SUMS", "manifest.json", "manifest.json.asc", "version"])
def test_part_names_that_collide_with_the_side_files(
    sides: Sides, forger: Forger, tmp_path: Path, reserved: str
) -> None:
    forger.bundle("1", [ForgedPart(reserved, tar_of([file_member("x", b"1")]), [file_entry("x", b"1")])])
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("1", dest), "not a valid part name", dest)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("format_version", 2, "format_version 2 is not supported"),
        ("name", "other", "replayed or misplaced"),
        ("version", "2", "replayed or misplaced"),
    ],
)
def test_signed_manifests_with_wrong_identity_or_format(
    sides: Sides, forger: Forger, tmp_path: Path, field: str, value: object, words: str
) -> None:
    forger.bundle("1", [ForgedPart("p", tar_of([file_member("x", b"1")]), [file_entry("x", b"1")])], {field: value})
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("1", dest), words, dest)


@pytest.mark.parametrize(
    "key",
    [
        "../other/_blobs/{id}",  # another bundle's payload, by climbing out of this one's folder
        "/demo/_blobs/{id}",  # absolute
        "demo/_blobs/{id}",  # the bundle folder spelt out, as the layout before relative keys did
        "other/_blobs/{id}",
        "_records/{id}",
        "_blobs/{id}/../../other/_blobs/{id}",
    ],
)
def test_a_payload_key_outside_this_bundles_blobs_is_refused_before_any_download(
    sides: Sides, forger: Forger, tmp_path: Path, key: str
) -> None:
    """The signed manifest's second part names a key outside ``_blobs/``; its bytes are real and sit
    exactly where a reader that joined keys naively would look. The first part's payload object is
    deleted: had any payload been opened before the key rule refused the manifest, the error would
    name the missing payload instead."""
    data = b"the real bytes"
    good = ForgedPart("good", tar_of([file_member("g", b"g")]), [file_entry("g", b"g")])
    bad = ForgedPart("bad", tar_of([file_member("x", data)]), [file_entry("x", data)])
    manifest = forger.manifest("1", [good, bad])
    sides.client().delete_object(Bucket=sides.bucket, Key="demo/" + manifest["parts"][0]["payload"]["key"])
    payload = manifest["parts"][1]["payload"]
    forged_key = key.format(id=payload["key"].rpartition("/")[2])
    naive = posixpath.normpath("demo/" + forged_key)  # where a reader joining paths would look
    real = sides.client().get_object(Bucket=sides.bucket, Key="demo/" + payload["key"])["Body"].read()
    sides.client().put_object(Bucket=sides.bucket, Key=naive, Body=real)
    payload["key"] = forged_key
    forger.commit("1", manifest)
    dest = tmp_path / "dest"
    proc = sides.in_("1", dest)
    assert_clean_failure(proc, "parts[1].payload.key", dest)
    assert "is not _blobs/<id>" in proc.stderr and "missing" not in proc.stderr
