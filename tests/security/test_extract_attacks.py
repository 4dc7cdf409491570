"""What extraction admits when the manifest is signed but its writer was buggy, old or forged.

The get side does not trust the put side's judgement: a manifest signed by a trusted key may still
list links that lead out of their part once followed through the part's other links, names that
break SHA256SUMS or a terminal, or paths no file system below the destination can hold. The
parser refuses them, and ``extract_part`` checks the links again for callers with entries from
elsewhere.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from offline_bundle.bundle.archive import extract_part
from offline_bundle.core.manifest import MAX_PATH_BYTES, FileEntry, parse_manifest, resolve_links
from offline_bundle.errors import VerificationError
from tests.support.forge import ForgedPart, Forger, Member, file_entry, file_member, node_member, tar_of
from tests.support.sides import Sides, assert_clean_failure

DEEP = "a/d1/d2/d3/d4/d5/d6/d7/d8"
# Each text stays inside the part; followed through 'up' (which leads back to 'a'), 'escape' climbs
# out of the part and, from a destination up to eight folders deep, reaches /etc/passwd.
EVIL_LINKS = {
    f"{DEEP}/up": "../../../../../../../..",
    "a/escape": "d1/d2/d3/d4/d5/d6/d7/d8/up/" + "../" * 10 + "etc/passwd",
}


def dirs_of(path: str) -> list[str]:
    segs = path.split("/")[:-1]
    return ["/".join(segs[: i + 1]) for i in range(len(segs))]


def link_entry(path: str, target: str) -> dict[str, Any]:
    return {"path": path, "type": "symlink", "mode": "0777", "mtime": 0, "target": target}


def dir_entry(path: str) -> dict[str, Any]:
    return {"path": path, "type": "dir", "mode": "0755", "mtime": 0}


def forged_links(links: dict[str, str]) -> tuple[list[Member], list[dict[str, Any]]]:
    """Tar members and manifest entries for ``links`` and the folders that hold them."""
    folders = sorted({d for p in links for d in dirs_of(p)})
    members = [node_member(d, tarfile.DIRTYPE) for d in folders]
    members += [node_member(p, tarfile.SYMTYPE, t) for p, t in sorted(links.items())]
    entries = [dir_entry(d) for d in folders] + [link_entry(p, t) for p, t in sorted(links.items())]
    return members, entries


def manifest_doc(files: list[dict[str, Any]]) -> bytes:
    sha = "0" * 64
    return json.dumps(
        {
            "format_version": 1,
            "name": "demo",
            "version": "1",
            "created_at": "2026-11-30T00:00:00Z",
            "tool": {"name": "old-writer", "version": "0"},
            "parts": [
                {
                    "name": "p",
                    "destination": "p/",
                    "payload": {"key": f"_blobs/{sha}", "size": 1, "sha256": sha},
                    "encryption": {"recipients": [], "passphrase": False, "compression": "none"},
                    "files": files,
                }
            ],
        }
    ).encode()


def as_entries(files: list[dict[str, Any]]) -> tuple[FileEntry, ...]:
    """What a parser that trusted the links would hand to extraction."""
    return tuple(
        FileEntry(f["path"], f["type"], int(f["mode"], 8), 0, f.get("size", 0), f.get("sha256"), f.get("target"))
        for f in files
    )


# ---------------------------------------------------------------------------------------- the rule


def test_resolve_links_follows_the_part_own_links() -> None:
    where = resolve_links(
        {
            **EVIL_LINKS,
            "l1": "real",
            "l2": "l1",  # a link to a link
            "through": "l2/inner/../f",
            "here": ".",
            "loop1": "loop2",
            "loop2": "loop1",
            "self": "self",
            "abs": "/etc",
            "dangling": "missing/file",
            "sub/l": "..",
            "sub/via": "l/sub/l/../x",  # through a link to a folder that is itself a link
        }
    )
    assert where[f"{DEEP}/up"] == "a"
    assert where["a/escape"] is None
    assert where["through"] == "real/f"
    assert where["here"] == ""
    assert where["loop1"] is None and where["loop2"] is None and where["self"] is None
    assert where["abs"] is None
    assert where["dangling"] == "missing/file"  # inside; the put side refuses it, a get tolerates it
    assert where["sub/via"] is None


def test_a_long_chain_is_cut_at_the_kernel_bound() -> None:
    chain = {f"l{i}": f"l{i + 1}" for i in range(60)} | {"l60": "f"}
    where = resolve_links(chain)
    assert where["l0"] is None  # 61 nested links: the kernel would say ELOOP
    assert where["l30"] == "f"
    assert where["l21"] == "f"  # 40 links: just within the bound, whatever was resolved before
    assert where["l20"] is None


def test_a_chain_of_thousands_of_links_is_refused_not_a_crash() -> None:
    """A forged manifest must not drive the resolver into Python's recursion limit (exit 2)."""
    chain = {f"l{i:05d}": f"l{i + 1:05d}" for i in range(5000)} | {"l05000": "f"}
    _, files = forged_links(chain)
    with pytest.raises(VerificationError, match="round a loop"):
        parse_manifest(manifest_doc([*files, file_entry("f", b"")]))


# ---------------------------------------------------------------------------------- the parser


@pytest.mark.parametrize(
    "links",
    [
        EVIL_LINKS,
        {"loop1": "loop2", "loop2": "loop1"},
        {"sub/l1": "..", "sub/l2": "l1", "x": "sub/l2/../etc/passwd"},
        {"dot": ".", "x": "dot/dot/../etc/passwd"},
    ],
)
def test_the_parser_refuses_links_that_lead_out_through_other_links(links: dict[str, str]) -> None:
    _, files = forged_links(links)
    with pytest.raises(VerificationError, match="leads outside its part"):
        parse_manifest(manifest_doc(files))


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("new\nline", "control character"),
        ("bell\x07", "control character"),
        ("csi\x9b31m", "control character"),
        ("back\\slash", "backslash"),
        ("/".join(["d" * 250] * 13), f"more than {MAX_PATH_BYTES}"),
        ("n" * 256, "longer than 255"),
    ],
)
def test_the_parser_refuses_names_no_destination_can_hold(path: str, words: str) -> None:
    files = [dir_entry(d) for d in dirs_of(path)] + [file_entry(path, b"x")]
    with pytest.raises(VerificationError, match=words) as e:
        parse_manifest(manifest_doc(files))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------ extraction


def test_extraction_refuses_escaping_links_even_when_the_parser_was_bypassed(tmp_path: Path) -> None:
    members, files = forged_links(EVIL_LINKS)
    dest = tmp_path / "d1" / "d2" / "stage"
    with pytest.raises(VerificationError, match="part p: unsafe symlink 'a/escape'"):
        extract_part(io.BytesIO(tar_of(members)), as_entries(files), str(dest), part="p")
    assert not dest.exists() or list(dest.rglob("*")) == []


def test_links_that_stay_inside_extract_and_resolve_inside(tmp_path: Path) -> None:
    links = {"l1": "real", "l2": "l1", "through": "l2/f", "here": ".", "real/back": "../here/l2"}
    members, files = forged_links(links)
    members.append(file_member("real/f", b"data"))  # ('real' is there: it holds a link)
    files.append(file_entry("real/f", b"data"))
    dest = tmp_path / "stage"
    extract_part(io.BytesIO(tar_of(members)), as_entries(files), str(dest), part="p")
    assert (dest / "through").read_bytes() == b"data"
    assert os.path.realpath(dest / "real" / "back") == str(dest / "real")


def test_hard_link_copies_extract_as_two_files(tmp_path: Path) -> None:
    members = [file_member("a", b"same"), file_member("b", b"same")]
    files = [file_entry("a", b"same"), file_entry("b", b"same")]
    dest = tmp_path / "stage"
    extract_part(io.BytesIO(tar_of(members)), as_entries(files), str(dest), part="p")
    assert (dest / "a").read_bytes() == (dest / "b").read_bytes() == b"same"


def test_a_destination_too_deep_for_a_long_path_fails_as_a_refusal_not_a_crash(tmp_path: Path) -> None:
    """A path within the limit below a destination that makes it exceed PATH_MAX: an OSError the get
    turns into one line (see unpack), never a partial write outside the destination."""
    path = "/".join(["d" * 250] * 12)  # 3,011 bytes: accepted
    dest = tmp_path.joinpath(*(c * 250 for c in "vwxyz"))
    files = [dir_entry(d) for d in dirs_of(path)] + [file_entry(path, b"x")]
    parse_manifest(manifest_doc(files))
    members = [node_member(d, tarfile.DIRTYPE) for d in dirs_of(path)] + [file_member(path, b"x")]
    with pytest.raises(OSError, match="File name too long"):
        extract_part(io.BytesIO(tar_of(members)), as_entries(files), str(dest), part="p")


# -------------------------------------------------------------------- a signed bundle through `in`


@pytest.mark.integration
def test_a_signed_bundle_with_links_that_lead_out_is_refused_by_in(
    sides: Sides, forger: Forger, tmp_path: Path
) -> None:
    members, files = forged_links(EVIL_LINKS)
    forger.bundle("1", [ForgedPart("p", tar_of(members), files)])
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("1", dest), "leads outside its part", dest)


@pytest.mark.integration
def test_a_signed_bundle_with_a_loop_or_a_line_break_is_refused_by_in(
    sides: Sides, forger: Forger, tmp_path: Path
) -> None:
    members, files = forged_links({"a": "b", "b": "a"})
    forger.bundle("1", [ForgedPart("p", tar_of(members), files)])
    assert_clean_failure(sides.in_("1", tmp_path / "d1"), "round a loop", tmp_path / "d1")
    name = f"evil\n{uuid.uuid4().hex}  p/etc-passwd"  # would forge a SHA256SUMS line
    forger.bundle("2", [ForgedPart("p", tar_of([file_member(name, b"x")]), [file_entry(name, b"x")])])
    assert_clean_failure(sides.in_("2", tmp_path / "d2"), "control character", tmp_path / "d2")
