"""The whole transfer through assets/out, assets/check and assets/in on real SeaweedFS and gpg."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.gpgkeys import import_keys, temporary_gnupghome
from tests.support.sides import Sides, meta, small_tree

pytestmark = pytest.mark.integration

BIG = 50 * 1024 * 1024 + 123


def varied_tree(root: Path) -> Path:
    """Every kind of thing docs/reference.md says is packed."""
    om = root / "ops-manager"
    (om / "nested" / "deeper").mkdir(parents=True)
    (om / "empty-folder").mkdir()
    (om / "empty-file").write_bytes(b"")
    (om / ".dotfile").write_text("hidden\n")
    (om / "run.sh").write_text("#!/bin/sh\necho run\n")
    (om / "run.sh").chmod(0o755)
    (om / "read-only.txt").write_text("ro")
    (om / "read-only.txt").chmod(0o444)
    (om / "nested" / "file with spaces.txt").write_text("spaces")
    (om / "nested" / "deeper" / "ünïcödé-名前.txt").write_text("utf-8")
    os.symlink("../run.sh", om / "nested" / "link-to-run")
    with open(om / "ops-manager-3.0.1.ova", "wb") as f:
        for _ in range(BIG // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(BIG % (1 << 20)))
    tiles = root / "tiles"
    tiles.mkdir()
    (tiles / "cf-6.0.0.pivotal").write_bytes(os.urandom(4096))
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode & 0o7777)
            else:
                out[rel] = ("file", st.st_mode & 0o7777, int(st.st_mtime), p.read_bytes())
    return out


def test_round_trip_of_a_varied_tree(sides: Sides, tmp_path: Path) -> None:
    build = varied_tree(tmp_path / "build")
    params = {
        "parts": [
            {"name": "ops-manager", "path": "ops-manager"},
            {"name": "tiles", "path": "tiles/*.pivotal", "destination": "elastic-runtime/"},
        ],
        "version": "1.0.0",
    }
    put = sides.put(build, params)
    assert put["version"] == {"version": "1.0.0"}
    m = meta(put)
    assert m["name"] == "demo" and m["parts"] == "ops-manager,tiles"
    assert m["signer"] == sides.keys.signer.fingerprint
    assert m["encrypted_to"] == sides.keys.recipient.fingerprint
    assert int(m["bytes"]) == BIG + 4096 + 7 + len("#!/bin/sh\necho run\n") + 2 + 6 + 5
    assert m["created_by"] == "main/offline-bundle-test/publish-bundle #17"
    assert {"files", "created_at"} <= set(m)

    assert sides.check() == ["1.0.0"]
    dest = tmp_path / "dest"
    got = sides.get("1.0.0", dest)
    assert got["version"] == {"version": "1.0.0"}
    assert meta(got)["signer"] == sides.keys.signer.fingerprint

    assert snapshot(dest / "ops-manager") == snapshot(build / "ops-manager")
    assert (dest / "tiles" / "cf-6.0.0.pivotal").read_bytes() == (build / "tiles" / "cf-6.0.0.pivotal").read_bytes()
    assert sorted(os.listdir(dest)) == [
        "SHA256SUMS",
        "manifest.json",
        "manifest.json.asc",
        "ops-manager",
        "tiles",
        "version",
    ]
    assert (dest / "version").read_text() == "1.0.0"

    sums = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stderr
    assert sums.stdout.count(": OK") == 8  # every regular file of both parts

    manifest = json.loads((dest / "manifest.json").read_bytes())
    assert manifest["format_version"] == 1 and manifest["version"] == "1.0.0"
    assert manifest["created_by"]["build_id"] == "4242"
    assert (dest / "manifest.json").read_bytes() in (dest / "manifest.json.asc").read_bytes()
    with temporary_gnupghome() as home:
        import_keys(home, sides.keys.signer.public_armored)
        v = subprocess.run(
            ["gpg", "--homedir", str(home), "--status-fd", "1", "--verify", str(dest / "manifest.json.asc")],
            capture_output=True,
            text=True,
        )
    assert v.returncode == 0, v.stderr
    assert f"VALIDSIG {sides.keys.signer.fingerprint} " in v.stdout
    # Each payload went straight to its final key (the 50 MiB one as a multipart upload): the put left
    # its commit object and one object per part, under the keys the manifest names, and nothing else.
    written = [k for k in sides.keys_under() if not k.startswith("demo/_records/")]
    named = sorted("demo/" + p["payload"]["key"] for p in manifest["parts"])
    assert written == sorted(["demo/1.0.0/manifest.json.asc", *named])
    assert all(re.fullmatch(r"demo/_blobs/[0-9a-f]{32}", k) for k in named) and len(set(named)) == 2
    assert sides.client().list_multipart_uploads(Bucket=sides.bucket).get("Uploads", []) == []


def test_payload_is_one_openpgp_message_gnupg_22_reads(sides: Sides, tmp_path: Path) -> None:
    sides.put(small_tree(tmp_path / "b", a="alpha"), {"parts": [{"name": "a", "path": "a"}], "version": "1"})
    [blob] = sides.blobs()
    data = sides.client().get_object(Bucket=sides.bucket, Key=blob)["Body"].read()
    import hashlib

    commit = sides.client().get_object(Bucket=sides.bucket, Key="demo/1/manifest.json.asc")["Body"].read()
    manifest = json.loads(commit.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0])
    sha = hashlib.sha256(data).hexdigest()  # the signed hash binds the bytes; the key is relative
    assert manifest["parts"][0]["payload"] == {"key": blob.removeprefix("demo/"), "size": len(data), "sha256": sha}
    packets = subprocess.run(["gpg", "--list-packets"], input=data, capture_output=True)
    listing = packets.stdout.decode()
    assert ":pubkey enc packet:" in listing
    assert ":encrypted data packet:" in listing and "mdc_method: 2" in listing  # SEIPD v1 + MDC, no AEAD
    assert ":aead encrypted packet:" not in listing


def put_versions(sides: Sides, tmp_path: Path, versions: list[str]) -> None:
    for i, v in enumerate(versions):
        build = small_tree(tmp_path / f"build-{i}", a=f"content {v}")
        sides.put(build, {"parts": [{"name": "a", "path": "a"}], "version": v})


def test_check_orders_by_semver_and_by_signed_creation_time(sides: Sides, tmp_path: Path) -> None:
    put_order = ["1.10.0", "1.0.0", "1.9.0", "1.0.0-rc.1"]
    created = {}
    for i, v in enumerate(put_order):
        build = small_tree(tmp_path / f"build-{i}", a=f"content {v}")
        created[v] = meta(sides.put(build, {"parts": [{"name": "a", "path": "a"}], "version": v}))["created_at"]
    assert sides.check() == ["1.10.0"]
    assert sides.check("1.0.0-rc.1") == ["1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0"]
    assert sides.check("1.9.0") == ["1.9.0", "1.10.0"]
    assert sides.check("0.0.1") == ["1.10.0"]  # a version no longer there: only the latest
    by_created = {**sides.get_source, "version_order": "created"}
    expected = sorted(put_order, key=lambda v: (created[v], v))  # the signed time to the second, then the name
    assert sides.check(expected[0], source=by_created) == expected
    assert sides.check(source=by_created) == [expected[-1]]


def test_check_lists_only_committed_versions(sides: Sides, tmp_path: Path) -> None:
    put_versions(sides, tmp_path, ["1.0.0"])
    c = sides.client()
    c.put_object(Bucket=sides.bucket, Key="demo/2.0.0/partial-upload", Body=b"x")  # no commit object yet
    c.put_object(Bucket=sides.bucket, Key="demo/_records/x.json", Body=b"{}")
    c.put_object(Bucket=sides.bucket, Key="other/3.0.0/manifest.json.asc", Body=b"x")
    assert sides.check() == ["1.0.0"]
    assert sides.check("1.0.0") == ["1.0.0"]


def test_existing_version_rules(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "b", a="one")
    params = {"parts": [{"name": "a", "path": "a"}], "version": "1.0.0"}
    sides.put(build, params)
    objects = sides.keys_under()

    again = sides.put(build, params)  # same content: nothing uploaded, same version
    assert again["version"] == {"version": "1.0.0"}
    assert meta(again)["uploaded_parts"] == "none"
    assert sides.keys_under() == objects

    (build / "a" / "a.txt").write_text("two")
    proc = sides.out(build, params)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "already committed with other content" in proc.stderr and "overwrite" in proc.stderr

    over = sides.put(build, {**params, "overwrite": True})
    assert over["version"] == {"version": "1.0.0"}
    dest = tmp_path / "dest"
    sides.get("1.0.0", dest)
    assert (dest / "a" / "a.txt").read_text() == "two"


def test_version_file_and_timestamp_versions(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "b", a="x")
    (build / "version").mkdir()
    (build / "version" / "number").write_text("2.3.4\n")
    v = sides.put(build, {"parts": [{"name": "a", "path": "a"}], "version_file": "version/number"})
    assert v["version"] == {"version": "2.3.4"}
    (build / "a" / "a.txt").write_text("y")
    ts = sides.put(build, {"parts": [{"name": "a", "path": "a"}]}, one_off=True)["version"]["version"]
    assert len(ts) == 16 and ts.endswith("Z") and "T" in ts
    dest = tmp_path / "dest"
    got = sides.get(ts, dest)
    assert "one-off build 4242" in meta(got)["created_by"]  # fly execute: no pipeline variables


def test_skip_download_writes_only_the_manifest(sides: Sides, tmp_path: Path) -> None:
    sides.put(small_tree(tmp_path / "b", a="x", b="y"), {"parts": [{"name": "a", "path": "a"}], "version": "1"})
    dest = tmp_path / "dest"
    got = sides.get("1", dest, params={"skip_download": True})
    assert meta(got)["fetched_parts"] == "none (skip_download)"
    # No SHA256SUMS: an empty one fails `sha256sum -c` (tests/integration/test_user_errors.py).
    assert sorted(os.listdir(dest)) == ["manifest.json", "manifest.json.asc", "version"]
    assert "no SHA256SUMS is written" in sides.runs[-1].stderr


def test_parts_subset_downloads_only_its_payloads(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "b", a="x", b="y")
    put = sides.put(build, {"parts": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}], "version": "1"})
    assert meta(put)["parts"] == "a,b"
    commit = sides.client().get_object(Bucket=sides.bucket, Key="demo/1/manifest.json.asc")["Body"].read()
    manifest = json.loads(commit.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0])
    b_payload = next(p["payload"]["key"] for p in manifest["parts"] if p["name"] == "b")
    sides.client().delete_object(Bucket=sides.bucket, Key="demo/" + b_payload)  # b cannot be downloaded any more
    dest = tmp_path / "dest"
    got = sides.get("1", dest, params={"parts": ["a"]})
    assert meta(got)["fetched_parts"] == "a"
    assert sorted(os.listdir(dest)) == ["SHA256SUMS", "a", "manifest.json", "manifest.json.asc", "version"]
    assert (dest / "SHA256SUMS").read_text().strip().endswith("  a/a.txt")


def test_unchanged_part_is_reused_without_upload(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "b", a="stable", b="v1")
    params = {"parts": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}]}
    first = sides.put(build, {**params, "version": "1.0.0"})
    assert meta(first)["uploaded_parts"] == "a,b"
    blobs_v1 = sides.blobs()
    (build / "b" / "b.txt").write_text("v2")
    second = sides.put(build, {**params, "version": "1.1.0"})
    assert meta(second)["uploaded_parts"] == "b" and meta(second)["reused_parts"] == "a"
    blobs_v2 = sides.blobs()
    assert len(blobs_v1) == 2 and len(blobs_v2) == 3 and set(blobs_v1) < set(blobs_v2)
    dest = tmp_path / "dest"
    sides.get("1.1.0", dest)
    assert (dest / "a" / "a.txt").read_text() == "stable" and (dest / "b" / "b.txt").read_text() == "v2"


def test_unencrypted_bundles_need_allow_unencrypted(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "b", a="x")
    plain = {k: v for k, v in sides.put_source.items() if k != "recipient_public_keys"}
    proc = sides.out(build, {"parts": [{"name": "a", "path": "a"}], "version": "1"}, source=plain)
    assert proc.returncode != 0 and "allow_unencrypted" in proc.stderr
    answer = sides.put(
        build, {"parts": [{"name": "a", "path": "a"}], "version": "1"}, source={**plain, "allow_unencrypted": True}
    )
    assert "encrypted_to" not in meta(answer)
    dest = tmp_path / "dest"
    sides.get("1", dest)
    assert (dest / "a" / "a.txt").read_text() == "x"


def test_passphrase_and_zlib_and_protected_keys(sides: Sides, tmp_path: Path) -> None:
    k = sides.keys
    put_source = {
        **sides.put_source,
        "recipient_public_keys": [k.recipient_pw.public_armored],
        "encryption_passphrase": "bundle passphrase 42",
        "signing_private_key": k.signer_pw.secret_armored,
        "signing_private_key_passphrase": k.signer_pw.passphrase,
        "compression": "zlib",
    }
    build = small_tree(tmp_path / "b", a="compressible " * 1000)
    sides.put(build, {"parts": [{"name": "a", "path": "a"}], "version": "1"}, source=put_source)
    trusted = [k.signer_pw.public_armored]
    with_key = {
        **sides.get_source,
        "trusted_public_keys": trusted,
        "decryption_private_key": k.recipient_pw.secret_armored,
        "decryption_private_key_passphrase": k.recipient_pw.passphrase,
    }
    sides.get("1", tmp_path / "d1", source=with_key)
    with_passphrase = {k2: v for k2, v in sides.get_source.items() if k2 != "decryption_private_key"}
    with_passphrase.update(trusted_public_keys=trusted, encryption_passphrase="bundle passphrase 42")
    sides.get("1", tmp_path / "d2", source=with_passphrase)
    assert (tmp_path / "d1" / "a" / "a.txt").read_text() == (tmp_path / "d2" / "a" / "a.txt").read_text()


def test_a_bundle_of_thousands_of_files(sides: Sides, tmp_path: Path) -> None:
    """A manifest far longer than the 19,995 characters GnuPG clear-signs on one line."""
    part = tmp_path / "b" / "many"
    for d in range(20):
        (part / f"dir-{d:02}").mkdir(parents=True)
        for i in range(150):
            (part / f"dir-{d:02}" / f"file-{i:04}.txt").write_text(f"{d}/{i}")
    sides.put(tmp_path / "b", {"parts": [{"name": "many", "path": "many"}], "version": "1"})
    dest = tmp_path / "dest"
    got = sides.get("1", dest)
    assert meta(got)["files"] == "3000"
    assert (dest / "many" / "dir-19" / "file-0149.txt").read_text() == "19/149"
    commit = (dest / "manifest.json.asc").read_bytes()
    assert len(commit) > 400_000 and max(len(line) for line in commit.split(b"\n")) < 19_995
    assert subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dest, capture_output=True).returncode == 0
