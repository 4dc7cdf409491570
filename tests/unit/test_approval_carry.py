"""Carrying approval objects between two folder stores, without approver keys (carried as they are).

With approver keys the objects are verified first; that path runs on real gpg keys in
tests/integration/test_approvals.py (export/import and mirror).
"""

from __future__ import annotations

from pathlib import Path

from offline_bundle.bundle.approvals import approval_key, carry_approvals
from offline_bundle.bundle.commit import Trusted
from offline_bundle.core.config import parse_source
from offline_bundle.core.manifest import Manifest
from offline_bundle.storage.folder import DirStore

FPR = "C" * 40
SIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{}\n-----BEGIN PGP SIGNATURE-----\n..."


def trusted() -> Trusted:
    m = Manifest("demo", "1.0.0", "2026-11-30T10:00:00Z", ())
    return Trusted(m, m.to_json_bytes(), b"", "A" * 40, False)


def test_objects_land_under_the_receiving_prefix_once_and_junk_stays_behind(tmp_path: Path) -> None:
    src_source = parse_source({"bucket": "bkt", "name": "demo", "prefix": "near/"})
    dst_source = parse_source({"bucket": "bkt", "name": "demo", "prefix": "far/"})
    src, dst = DirStore(str(tmp_path / "a")), DirStore(str(tmp_path / "b"))
    src.put_bytes(approval_key(src_source, "1.0.0", FPR), SIGNED)
    src.put_bytes("near/demo/1.0.0/approvals/notes.txt", b"hello")
    src.put_bytes(approval_key(src_source, "1.0.0", "D" * 40), b"not signed")
    lines: list[str] = []

    written = carry_approvals(src_source, src, dst, trusted(), lines.append, dst_source=dst_source)
    assert written == [f"far/demo/1.0.0/approvals/{FPR}.asc"]
    assert dst.get_bytes(written[0]) == SIGNED
    assert [p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*") if p.is_file()] == written
    assert any("notes.txt is not an approval object" in ln for ln in lines), lines
    assert any(f"{'D' * 40}.asc not carried: it is not an OpenPGP clear-signed message" in ln for ln in lines), lines

    # A second run finds it there: nothing is written again.
    assert carry_approvals(src_source, src, dst, trusted(), lines.append, dst_source=dst_source) == []
