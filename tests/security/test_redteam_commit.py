"""Commit objects and manifests a forger (or a buggy packer holding the signing key) could commit.

Each case is signed by the trusted key, so only the get side's own parser stands between it and
the disk: refused with one line and exit 1 (never a crash, exit 2), the destination left empty.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from offline_bundle.core.manifest import parse_manifest
from offline_bundle.errors import VerificationError
from tests.support.forge import ForgedPart, Forger, file_entry, file_member, node_member, tar_of
from tests.support.gpgkeys import clearsign
from tests.support.sides import Sides, assert_clean_failure

pytestmark = pytest.mark.integration


def one_part(forger: Forger, data: bytes = b"fine", path: str = "ok.txt") -> dict[str, Any]:
    return forger.manifest("1", [ForgedPart("p", tar_of([file_member(path, data)]), [file_entry(path, data)])])


def put_commit(forger: Forger, body: bytes, version: str = "1") -> None:
    forger.client.put_object(Bucket=forger.bucket, Key=f"{forger.name}/{version}/manifest.json.asc", Body=body)


def dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def get_refused(sides: Sides, tmp_path: Path, words: str) -> None:
    dest = tmp_path / "dest"
    proc = sides.in_("1", dest)
    assert_clean_failure(proc, words, dest)
    assert proc.returncode == 1, proc.stderr


# ------------------------------------------------------------------- duplicate keys and wrong types


def test_duplicate_json_keys_in_a_signed_manifest_are_refused(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    """Two ``parts`` keys: Python's json keeps the last, other readers (a reviewer's jq, another tool)
    may keep the first. A signed document must mean one thing, so it is refused."""
    doc = one_part(forger)
    decoy = dumps({**doc, "parts": []})
    body = decoy[:-1] + ',"parts":' + dumps(doc["parts"]) + "}"
    put_commit(forger, clearsign(forger.signer, body.encode()))
    get_refused(sides, tmp_path, "twice")


def test_duplicate_keys_inside_a_file_entry_are_refused() -> None:
    entry = dumps(file_entry("x", b"1"))
    twice = entry[:-1] + ',"sha256":"' + "0" * 64 + '"}'
    doc = {
        "format_version": 1,
        "name": "demo",
        "version": "1",
        "created_at": "x",
        "tool": {},
        "parts": [],
    }
    part = {
        "name": "p",
        "destination": "p/",
        "payload": {"key": "demo/_blobs/" + "a" * 64, "size": 1, "sha256": "a" * 64},
        "encryption": {"recipients": [], "passphrase": False, "compression": "none"},
        "files": ["FILE"],
    }
    text = dumps({**doc, "parts": [part]}).replace('"FILE"', twice)
    with pytest.raises(VerificationError, match="twice"):
        parse_manifest(text.encode())


@pytest.mark.parametrize("value", ["1", True, 1.0, [1], None])
def test_a_format_version_that_is_not_the_integer_1_is_refused(
    sides: Sides, forger: Forger, tmp_path: Path, value: object
) -> None:
    """``true == 1`` and ``1.0 == 1`` in Python: only the integer 1 is format version 1."""
    forger.commit("1", {**one_part(forger), "format_version": value})
    get_refused(sides, tmp_path, "format_version")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "1"),
        ("size", 1.0),
        ("size", True),
        ("size", -1),
        ("mtime", "0"),
        ("mode", 420),
        ("mode", "99999"),
        ("sha256", "A" * 64),
        ("path", ["ok.txt"]),
        ("type", "hardlink"),
    ],
)
def test_file_fields_of_the_wrong_type_are_refused(
    sides: Sides, forger: Forger, tmp_path: Path, field: str, value: object
) -> None:
    doc = one_part(forger)
    doc["parts"][0]["files"][0][field] = value
    forger.commit("1", doc)
    get_refused(sides, tmp_path, "manifest")


def test_a_number_of_ten_thousand_digits_is_refused_not_a_crash(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    """Python refuses to convert integers over 4,300 digits with a ValueError that is not a JSON error."""
    text = dumps(one_part(forger)).replace('"mtime":0', '"mtime":' + "9" * 10_000)
    put_commit(forger, clearsign(forger.signer, text.encode()))
    get_refused(sides, tmp_path, "manifest")


@pytest.mark.parametrize("mtime", [10**20, -(10**20)])
def test_an_mtime_no_file_system_can_hold_is_refused_not_a_crash(
    sides: Sides, forger: Forger, tmp_path: Path, mtime: int
) -> None:
    doc = one_part(forger)
    doc["parts"][0]["files"][0]["mtime"] = mtime
    forger.commit("1", doc)
    get_refused(sides, tmp_path, "mtime")


def test_a_file_of_an_exabyte_is_refused_for_space_before_any_download(
    sides: Sides, forger: Forger, tmp_path: Path
) -> None:
    doc = one_part(forger)
    doc["parts"][0]["files"][0]["size"] = 10**18
    forger.commit("1", doc)
    get_refused(sides, tmp_path, "not enough free space")


# ------------------------------------------------------------------- the signature's envelope


def test_text_after_the_signature_is_not_believed(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    """A valid commit object with a second manifest appended after the signature block: either
    refused, or only the signed manifest counts (the appended part's file never appears)."""
    forger.commit("1", one_part(forger))
    good = forger.client.get_object(Bucket=forger.bucket, Key="demo/1/manifest.json.asc")["Body"].read()
    evil = one_part(forger, b"evil", "evil.txt")
    put_commit(forger, good + b"\n" + dumps(evil).encode() + b"\n")
    dest = tmp_path / "dest"
    proc = sides.in_("1", dest)
    if proc.returncode == 0:
        assert (dest / "p" / "ok.txt").read_bytes() == b"fine"
        assert not (dest / "p" / "evil.txt").exists()
        assert b"evil" not in (dest / "manifest.json").read_bytes()
    else:
        assert_clean_failure(proc, "commit object", dest)


def test_text_before_the_signature_is_refused(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    signed = clearsign(forger.signer, dumps(one_part(forger)).encode())
    put_commit(forger, dumps(one_part(forger, b"evil", "evil.txt")).encode() + b"\n" + signed)
    get_refused(sides, tmp_path, "refused")


def test_two_signed_messages_in_one_commit_object_are_refused(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    first = clearsign(forger.signer, dumps(one_part(forger)).encode())
    second = clearsign(forger.signer, dumps(one_part(forger, b"evil", "evil.txt")).encode())
    put_commit(forger, first + second)
    get_refused(sides, tmp_path, "commit object")


def test_a_signed_message_signed_again_is_refused(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    inner = clearsign(forger.signer, dumps(one_part(forger)).encode())
    put_commit(forger, clearsign(forger.signer, inner))
    get_refused(sides, tmp_path, "commit object")


def test_a_commit_object_over_the_size_limit_is_refused_without_reading_it(
    sides: Sides, forger: Forger, tmp_path: Path
) -> None:
    body = clearsign(forger.signer, dumps(one_part(forger)).encode())
    put_commit(forger, body + b"\n" * (64 << 20))
    get_refused(sides, tmp_path, "larger than")


# ------------------------------------------------------------------- parts and names


def test_a_manifest_with_no_parts_gives_only_the_side_files(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    """Signed and empty: nothing to extract; the get writes the version and manifest, nothing else."""
    forger.commit("1", forger.manifest("1", []))
    dest = tmp_path / "dest"
    proc = sides.in_("1", dest)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "manifest.json.asc", "version"]
    assert (dest / "version").read_text() == "1"


@pytest.mark.parametrize("name", ["sha256sums", "Version", "MANIFEST.JSON", "Manifest.Json.Asc"])
def test_a_part_named_like_a_side_file_in_another_case_is_refused(
    sides: Sides, forger: Forger, tmp_path: Path, name: str
) -> None:
    """On a case-insensitive destination (macOS, a FAT or exFAT medium) part ``Version`` and the
    ``version`` file are one name."""
    forger.commit("1", forger.manifest("1", [ForgedPart(name, tar_of([]), [])]))
    get_refused(sides, tmp_path, "part name")


@pytest.mark.parametrize(
    "path",
    ["%2e%2e/x", "\uff0e\uff0e/x", "..\u200b/x", "a\u2215..\u2215x", ". ./x"],
)
def test_dot_dot_spelled_otherwise_is_a_plain_name_inside_the_part(
    sides: Sides, forger: Forger, tmp_path: Path, path: str
) -> None:
    """Encodings and look-alikes of '..' are ordinary names on the get side: the file lands inside."""
    folders = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    files = [{"path": d, "type": "dir", "mode": "0755", "mtime": 0} for d in folders] + [file_entry(path, b"1")]
    members = [node_member(d, tarfile.DIRTYPE) for d in folders] + [file_member(path, b"1")]
    forger.bundle("1", [ForgedPart("p", tar_of(members), files)])
    dest = tmp_path / "dest"
    sides.get("1", dest)
    assert (dest / "p" / path).read_bytes() == b"1"
    assert (dest / "p" / path).resolve().is_relative_to((dest / "p").resolve())


def test_nfc_and_nfd_twins_are_two_files(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    """'café' composed and decomposed: two names on Linux, both extracted, each with its own bytes.
    (A normalising file system would see one name twice: extraction refuses an existing name.)"""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    members = [file_member(nfc, b"composed"), file_member(nfd, b"decomposed")]
    forger.bundle(
        "1", [ForgedPart("p", tar_of(members), [file_entry(nfc, b"composed"), file_entry(nfd, b"decomposed")])]
    )
    dest = tmp_path / "dest"
    sides.get("1", dest)
    assert (dest / "p" / nfc).read_bytes() == b"composed"
    assert (dest / "p" / nfd).read_bytes() == b"decomposed"


def test_a_destination_that_climbs_is_refused(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    for destination in ("../x/", "/abs/", "a/../../x/"):
        doc = one_part(forger)
        doc["parts"][0]["destination"] = destination
        forger.commit("1", doc)
        get_refused(sides, tmp_path / destination.replace("/", "_"), "destination")
