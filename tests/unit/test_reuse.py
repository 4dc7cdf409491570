"""The reuse decision: cheap checks first, whole-file hashing only when they all agree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from offline_bundle.bundle.archive import TarStream, plan_part
from offline_bundle.bundle.pack import _same_files
from offline_bundle.core.manifest import PROBE_BYTES, Encryption, Part, Payload


def committed_part(root: Path) -> Part:
    """Pack ``root/p`` as a put would and return the part its manifest would hold."""
    plan = plan_part(root, "p", "p", "p/")
    tar = TarStream(plan.entries)
    while tar.read(1 << 20):
        pass
    files = tuple(e.to_file_entry() for e in plan.entries)
    sha = "0" * 64
    return Part("p", "p/", Payload("_blobs/" + "1" * 32, 1, sha), Encryption(), files)


def test_probe_is_recorded_for_files_larger_than_it(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    big = os.urandom(PROBE_BYTES + 10)
    (tmp_path / "p" / "big").write_bytes(big)
    (tmp_path / "p" / "small").write_bytes(b"s")
    part = committed_part(tmp_path)
    probes = {f.path: f.probe for f in part.files}
    assert probes == {"big": hashlib.sha256(big[:PROBE_BYTES]).hexdigest(), "small": None}


def test_a_changed_head_is_seen_without_hashing_the_file(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    f = tmp_path / "p" / "big"
    f.write_bytes(os.urandom(3 * PROBE_BYTES))
    part = committed_part(tmp_path)
    with open(f, "r+b") as fh:
        fh.write(b"changed")  # same size, same path, same mode: only the content differs
    plan = plan_part(tmp_path, "p", "p", "p/")
    assert not _same_files(plan, part)
    assert plan.hashes is None  # decided by the probe: the file was not read whole


def test_a_change_past_the_probe_is_caught_by_the_full_hash(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    f = tmp_path / "p" / "big"
    f.write_bytes(os.urandom(3 * PROBE_BYTES))
    part = committed_part(tmp_path)
    plan = plan_part(tmp_path, "p", "p", "p/")
    assert _same_files(plan, part) and plan.hashes is not None
    with open(f, "r+b") as fh:
        fh.seek(2 * PROBE_BYTES)
        fh.write(b"changed")
    plan = plan_part(tmp_path, "p", "p", "p/")
    assert not _same_files(plan, part) and plan.hashes is not None
