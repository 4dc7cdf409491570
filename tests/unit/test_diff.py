"""``diff`` from two manifests, and the pure parts of the two-person rule (config, statements, status).

The signatures themselves are exercised on real gpg keys in tests/integration/test_approvals.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from offline_bundle.bundle.approvals import (
    ApprovalRejected,
    ApprovalStatus,
    Statement,
    check_statement,
    is_approval_leaf,
    make_statement,
    parse_statement,
)
from offline_bundle.bundle.commit import Trusted
from offline_bundle.bundle.diff import diff_manifests, to_json, to_text
from offline_bundle.core.config import parse_source
from offline_bundle.core.manifest import Encryption, FileEntry, Manifest, Part, Payload
from offline_bundle.errors import ConfigError

SIGNER = "A" * 40
APPROVER = "B" * 40
PLAIN = Encryption((), False, "none")
KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nxx\n-----END PGP PUBLIC KEY BLOCK-----"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def part(name: str, payload: str, **files: str) -> Part:
    entries = tuple(FileEntry(path, "file", 0o644, 1, len(text), sha(text)) for path, text in files.items())
    return Part(name, f"{name}/", Payload(f"demo/_blobs/{sha(payload)}", 100, sha(payload)), PLAIN, entries)


def trusted(version: str, *parts: Part, build: dict[str, str] | None = None) -> Trusted:
    m = Manifest("demo", version, "2026-11-30T10:00:00Z", parts, created_by=build)
    data = m.to_json_bytes()
    return Trusted(m, data, b"(clear-signed " + data + b")", SIGNER, False)


OLD = trusted("1.0.0", part("app", "app-1", **{"run.sh": "echo 1"}), part("lib", "lib-1", **{"l.so": "lib"}))
NEW = trusted(
    "1.1.0",
    part("app", "app-2", **{"run.sh": "echo 22"}),
    part("lib", "lib-1", **{"l.so": "lib"}),
    part("docs", "docs-1", **{"README": "read me"}),
    build={"build_team_name": "main", "build_pipeline_name": "p", "build_job_name": "j", "build_name": "7"},
)


def test_one_changed_file_one_added_part_and_one_reused_payload_exactly() -> None:
    d = diff_manifests(OLD, NEW)
    lines = to_text(d)
    assert lines[0] == "bundle demo: 1.0.0 -> 1.1.0"
    assert lines[1].startswith(f"  old 1.0.0: signed by {SIGNER}; created 2026-11-30T10:00:00Z by -; manifest sha256 ")
    assert lines[2].startswith(f"  new 1.1.0: signed by {SIGNER}; created 2026-11-30T10:00:00Z by main/p/j #7;")
    assert lines[3:] == [
        "parts: 1 added, 0 removed, 1 changed, 1 unchanged",
        "  ~ app -> app/  changed (files, payload)",
        "  + docs -> docs/  added",
        "  = lib -> lib/  unchanged",
        "files: 1 added, 0 removed, 1 changed",
        f"  ~ app/run.sh  size 6 -> 7, sha256 {sha('echo 1')} -> {sha('echo 22')}",
        f"  + docs/README  7 bytes 0644 sha256 {sha('read me')}",
        "payloads reused: 1",
        f"  = lib: demo/_blobs/{sha('lib-1')} (100 bytes, sha256 {sha('lib-1')})",
    ]
    doc = to_json(d)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["parts"] == {"added": ["docs"], "removed": [], "changed": ["app"], "unchanged": ["lib"]}
    assert doc["parts_changed"] == {"app": ["files", "payload"]}
    assert doc["files"] == {
        "added": [
            {"part": "docs", "path": "README", "type": "file", "mode": "0644", "size": 7, "sha256": sha("read me")}
        ],
        "removed": [],
        "changed": [
            {
                "part": "app",
                "path": "run.sh",
                "old": {"type": "file", "mode": "0644", "size": 6, "sha256": sha("echo 1")},
                "new": {"type": "file", "mode": "0644", "size": 7, "sha256": sha("echo 22")},
            }
        ],
    }
    assert doc["payloads_reused"] == [
        {"part": "lib", "key": f"demo/_blobs/{sha('lib-1')}", "size": 100, "sha256": sha("lib-1")}
    ]
    assert doc["old"]["manifest_sha256"] == hashlib.sha256(OLD.manifest_bytes).hexdigest()
    assert doc["new"]["created_by"] == "main/p/j #7"


def test_removed_parts_and_files_a_mode_change_and_mtimes_ignored() -> None:
    base = part("app", "p", **{"a": "1", "b": "2"})
    changed = Part(
        "app",
        "apps/",
        base.payload,
        PLAIN,
        (FileEntry("a", "file", 0o755, 999, 1, sha("1")),),  # mode changed, mtime too; b removed
    )
    d = diff_manifests(trusted("1", base, part("gone", "g", x="x")), trusted("2", changed))
    assert d.parts_with("removed") == ["gone"]
    assert [(p.name, p.what) for p in d.parts if p.status == "changed"] == [("app", ("destination", "files"))]
    lines = to_text(d)
    assert "  ~ app/a  mode 0644 -> 0755" in lines
    assert f"  - app/b  1 bytes 0644 sha256 {sha('2')}" in lines
    assert f"  - gone/x  1 bytes 0644 sha256 {sha('x')}" in lines
    assert "      destination app/ -> apps/" in lines
    same_but_mtime = Part(
        "app",
        "app/",
        base.payload,
        PLAIN,
        tuple(FileEntry(f.path, f.type, f.mode, 5, f.size, f.sha256) for f in base.files),
    )
    assert diff_manifests(trusted("1", base), trusted("2", same_but_mtime)).files == ()


def test_the_first_version_against_nothing_is_all_added() -> None:
    d = diff_manifests(None, OLD)
    assert to_text(d)[:2] == ["bundle demo: (nothing) -> 1.0.0", "  old (none: every part and file is new)"]
    assert to_json(d)["old"] is None
    assert d.parts_with("added") == ["app", "lib"] and d.reused == ()


# ------------------------------------------------------------------------------------------- config


def test_required_approvals_parses_numbers_and_digit_strings_and_empty_means_absent() -> None:
    base = {"bucket": "bkt", "name": "demo", "approver_public_keys": [KEY, KEY]}
    assert parse_source({**base, "required_approvals": 2}).required_approvals == 2
    assert parse_source({**base, "required_approvals": "1"}).required_approvals == 1
    assert parse_source({**base, "required_approvals": ""}).required_approvals == 0
    assert parse_source(base).required_approvals == 0
    assert len(parse_source({**base, "approver_public_keys": KEY + "\n" + KEY}).approver_public_keys) == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (3, "source.required_approvals is 3 but source.approver_public_keys lists 2 key(s)"),
        (-1, "source.required_approvals must be 0 or more"),
        ("two", "source.required_approvals must be a whole number, not a string"),
        (True, "source.required_approvals must be a whole number, not a boolean"),
    ],
)
def test_required_approvals_mistakes_are_config_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_source({"bucket": "bkt", "name": "demo", "approver_public_keys": [KEY, KEY], "required_approvals": value})
    assert message in str(e.value)


def test_required_approvals_without_approver_keys_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lists 0 key"):
        parse_source({"bucket": "bkt", "name": "demo", "required_approvals": 1})


# --------------------------------------------------------------------------------------- statements


def test_a_statement_round_trips_and_binds_name_version_and_manifest_bytes() -> None:
    st = make_statement(NEW, APPROVER, "  looks right  ")
    assert st.comment == "looks right"
    text = st.to_json_bytes()
    assert b"\n" not in text and json.loads(text)["kind"] == "offline-bundle-approval"
    assert parse_statement(text) == st
    check_statement(st, APPROVER, NEW, parse_source({"bucket": "bkt", "name": "demo"}))
    source = parse_source({"bucket": "bkt", "name": "demo"})
    with pytest.raises(ApprovalRejected, match="a replayed or misplaced approval"):
        check_statement(make_statement(OLD, APPROVER, None), APPROVER, NEW, source)
    other = Statement("demo", "1.1.0", "0" * 64, st.approved_at, APPROVER)
    with pytest.raises(ApprovalRejected, match="binds other manifest bytes"):
        check_statement(other, APPROVER, NEW, source)
    with pytest.raises(ApprovalRejected, match="names approver"):
        check_statement(st, "C" * 40, NEW, source)
    with pytest.raises(ApprovalRejected, match="the key that signed the bundle"):
        check_statement(make_statement(NEW, SIGNER, None), SIGNER, NEW, source)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"{", "not JSON"),
        (b'{"kind":"something-else"}', "not an offline-bundle-approval statement"),
        (b'{"kind":"offline-bundle-approval","format":2}', "format 2 is not known"),
        (b'{"kind":"offline-bundle-approval","format":1,"name":"demo"}', "lacks one of"),
    ],
)
def test_malformed_statements_are_rejected_with_a_reason(text: bytes, why: str) -> None:
    with pytest.raises(ApprovalRejected, match=why):
        parse_statement(text)


def test_approval_object_names_and_the_refusal_line() -> None:
    assert is_approval_leaf("B" * 40 + ".asc")
    assert not is_approval_leaf("b" * 40 + ".asc")
    assert not is_approval_leaf("B" * 39 + ".asc")
    assert not is_approval_leaf("notes.txt")
    status = ApprovalStatus("X", "1.2.0", 2, ("0123456789ABCDEF" * 2 + "ABCD1234",))
    assert status.describe() == (
        "version 1.2.0 of bundle X has 1 of 2 required approvals (by 89ABCDEFABCD1234); missing 1"
    )
    assert not status.satisfied
    assert ApprovalStatus("X", "1", 0, ()).satisfied
