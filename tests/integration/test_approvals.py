"""The two-person rule on real parts: SeaweedFS buckets, real gpg keys, a folder as the medium.

Two of three approvers are required on the air-gapped side. Approvals are written by the real
``approve`` command; the refused ones are written the way an attacker with bucket access would
(clear-signed statements put straight into the bucket), and each must be ignored with a warning
that names why, while the version stays unlisted by ``check`` and refused by ``in``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import cli_env, ok, run_cli, write_yaml
from tests.support.concourse import make_source, parse_stdout, record_output
from tests.support.gpgkeys import PASSPHRASE, TestKey, _generate, _revoke, clearsign, temporary_gnupghome
from tests.support.paths import venv_bin
from tests.support.seaweed import new_bucket_name
from tests.support.sides import Sides, meta

pytestmark = pytest.mark.integration
S3_ONLY = ("bucket", "endpoint", "region_name", "access_key_id", "secret_access_key")


@dataclass(frozen=True)
class Approvers:
    a: TestKey  # passphrase-protected, as a person's key should be
    b: TestKey
    c: TestKey
    outsider: TestKey  # not among approver_public_keys
    revoked: TestKey  # listed, but its public key carries its revocation


@pytest.fixture(scope="module")
def approvers() -> Approvers:
    with temporary_gnupghome() as home:
        revoked = _generate(home, "revoked_approver")
        return Approvers(
            a=_generate(home, "approver_a", passphrase=PASSPHRASE),
            b=_generate(home, "approver_b"),
            c=_generate(home, "approver_c"),
            outsider=_generate(home, "outsider"),
            revoked=_revoke(home, revoked),
        )


@dataclass
class World:
    sides: Sides
    approvers: Approvers
    tmp: Path

    @property
    def bucket(self) -> str:
        return self.sides.bucket

    def source(self, *, approvers: list[TestKey] | None = None, required: int | str = 2, **kw: Any) -> dict[str, Any]:
        """The air-gapped side's source with the two-person rule (2 of a, b, c unless told otherwise)."""
        keys = approvers if approvers is not None else [self.approvers.a, self.approvers.b, self.approvers.c]
        return {
            **self.sides.get_source,
            "approver_public_keys": [k.public_armored for k in keys],
            "required_approvals": required,
            **kw,
        }

    def approver_config(self, bucket: str | None = None, **kw: Any) -> Path:
        """What an approver holds: the signer's public key and write access for the approval object only."""
        doc = make_source(
            self.sides.server,
            bucket or self.bucket,
            use_writer_identity=True,
            trusted_public_keys=[self.sides.keys.signer.public_armored],
            approver_public_keys=[k.public_armored for k in (self.approvers.a, self.approvers.b, self.approvers.c)],
            **kw,
        )
        return write_yaml(self.tmp / f"approver-{len(list(self.tmp.glob('approver-*')))}.yml", doc)

    def key_file(self, key: TestKey) -> Path:
        path = self.tmp / f"{key.name}.key"
        if not path.exists():
            path.write_text(key.secret_armored)
            path.chmod(0o600)
        return path

    def approve(self, version: str, key: TestKey, *extra: str | Path, config: Path | None = None) -> Any:
        args: list[str | Path] = ["approve", "--config", config or self.approver_config(), version]
        args += ["--key", self.key_file(key), "--yes", *extra]
        if key.passphrase:
            pw = self.tmp / "passphrase"
            pw.write_text(key.passphrase + "\n")
            args += ["--passphrase-file", pw]
        return run_cli(*args)

    def put(self, version: str, **files: str) -> dict[str, Any]:
        build = self.tmp / f"build-{version}"
        for part, text in files.items():
            (build / part).mkdir(parents=True, exist_ok=True)
            (build / part / f"{part}.txt").write_text(text)
        parts = [{"name": p, "path": p} for p in files]
        return self.sides.put(build, {"parts": parts, "version": version})

    def put_object(self, key: str, body: bytes) -> None:
        self.sides.client().put_object(Bucket=self.bucket, Key=key, Body=body)

    def get_object(self, key: str) -> bytes:
        return self.sides.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def manifest_sha256(self, version: str) -> str:
        """The SHA-256 of the signed manifest bytes, as ``in`` writes them out."""
        dest = self.tmp / f"manifest-{version}-{os.urandom(4).hex()}"
        self.sides.get(version, dest, params={"skip_download": True})
        return hashlib.sha256((dest / "manifest.json").read_bytes()).hexdigest()

    def forged(self, key: TestKey, version: str, sha256: str, **over: Any) -> bytes:
        """A clear-signed approval statement as anyone holding ``key`` can make one, without the tool."""
        doc = {
            "kind": "offline-bundle-approval",
            "format": 1,
            "name": "demo",
            "version": version,
            "manifest_sha256": sha256,
            "approved_at": "2026-11-30T12:00:00Z",
            "approver": key.fingerprint,
            **over,
        }
        return clearsign(key, json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())


@pytest.fixture
def world(sides: Sides, approvers: Approvers, tmp_path: Path) -> Iterator[World]:
    yield World(sides, approvers, tmp_path)


def check(world: World, source: dict[str, Any], version: str | None = None) -> tuple[list[str], str]:
    from tests.support.concourse import run_asset

    req: dict[str, Any] = {"source": source}
    if version is not None:
        req["version"] = {"version": version}
    proc = run_asset("check", req)
    return [v["version"] for v in parse_stdout(proc)], proc.stderr


def refused_in(world: World, version: str, source: dict[str, Any]) -> str:
    """``in`` refuses with one line and leaves the destination empty; that line."""
    dest = world.tmp / f"in-{os.urandom(4).hex()}"
    proc = world.sides.in_(version, dest, source=source)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert os.listdir(dest) == []
    return errors[0]


def short(key: TestKey) -> str:
    return key.fingerprint[-16:]


def approval_keys(world: World, bucket: str, version: str) -> list[str]:
    resp = world.sides.client().list_objects_v2(Bucket=bucket, Prefix=f"demo/{version}/approvals/")
    return sorted(o["Key"] for o in resp.get("Contents", []))


# ------------------------------------------------------------------------------------- the whole flow


def test_two_of_three_approvals_the_second_carried_later_by_media_without_resending_payloads(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="release one", lib="library")
    source = world.source()

    # One approval (a, on the connected bucket): not enough.
    run = ok(world.approve("1.0.0", ap.a, "--comment", "reviewed the release notes"))
    assert f"approved demo 1.0.0 as {ap.a.fingerprint}" in run.stdout
    assert "+ app/app.txt" in run.stdout  # the diff the approver saw: the first version, all new
    assert PASSPHRASE not in run.stdout + run.stderr
    listed, _ = check(world, source)
    assert listed == []
    line = refused_in(world, "1.0.0", source)
    assert line == (f"error: version 1.0.0 of bundle demo has 1 of 2 required approvals (by {short(ap.a)}); missing 1")

    # Carried to the air-gapped bucket on a medium: still one approval there.
    medium = world.tmp / "medium"
    far_bucket = new_bucket_name()
    world.sides.client().create_bucket(Bucket=far_bucket)
    near_cfg = world.approver_config()
    far_cfg = world.approver_config(bucket=far_bucket)
    first = ok(run_cli("export", "--config", near_cfg, "--to", medium, "--piece-size", "5MiB"))
    assert "approvals: 1 carried to the medium" in first.stdout
    ok(run_cli("import", "--config", far_cfg, "--from", medium))
    far_source = {**source, "bucket": far_bucket}
    assert check(world, far_source)[0] == []
    assert "has 1 of 2 required approvals" in refused_in(world, "1.0.0", far_source)

    # The second approval arrives later: export again, import again; only the approval object moves.
    ok(world.approve("1.0.0", ap.b))
    client = world.sides.client()
    blobs_before = {
        o["Key"]: (o["ETag"], o["LastModified"])
        for o in client.list_objects_v2(Bucket=far_bucket, Prefix="demo/_blobs/").get("Contents", [])
    }
    assert blobs_before
    again = ok(run_cli("export", "--config", near_cfg, "--to", medium, "--piece-size", "5MiB"))
    assert "0 piece(s) written" in again.stdout, again.stdout
    assert "approvals: 1 carried to the medium" in again.stdout
    carried = ok(run_cli("import", "--config", far_cfg, "--from", medium))
    assert carried.stdout.strip() == "demo 1.0.0: already committed, 1 approval(s) carried"
    blobs_after = {
        o["Key"]: (o["ETag"], o["LastModified"])
        for o in client.list_objects_v2(Bucket=far_bucket, Prefix="demo/_blobs/").get("Contents", [])
    }
    assert blobs_after == blobs_before  # no payload object was sent again
    assert approval_keys(world, far_bucket, "1.0.0") == sorted(
        f"demo/1.0.0/approvals/{k.fingerprint}.asc" for k in (ap.a, ap.b)
    )

    # Now check lists it and in succeeds, naming both approvers.
    assert check(world, far_source)[0] == ["1.0.0"]
    got = world.sides.get("1.0.0", world.tmp / "got", source=far_source)
    assert meta(got)["approved_by"] == ",".join(sorted([ap.a.fingerprint, ap.b.fingerprint]))
    assert (world.tmp / "got" / "app" / "app.txt").read_text() == "release one"

    # A third run carries nothing and still sends no payload.
    third = ok(run_cli("import", "--config", far_cfg, "--from", medium))
    assert third.stdout.strip() == "demo 1.0.0: already committed, nothing imported"


def test_an_approval_written_on_a_medium_is_carried_by_import_and_verify_from_dir_needs_it(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="x")
    medium = world.tmp / "medium"
    ok(run_cli("export", "--config", world.approver_config(), "--to", medium, "--piece-size", "5MiB"))
    # The approvers review on the medium itself: no CI access, no decryption key.
    medium_cfg = write_yaml(
        world.tmp / "medium.yml",
        {
            "name": "demo",
            "trusted_public_keys": [world.sides.keys.signer.public_armored],
            "approver_public_keys": [k.public_armored for k in (ap.a, ap.b, ap.c)],
            "required_approvals": 2,
        },
    )
    ok(
        run_cli(
            "approve", "--config", medium_cfg, "--from-dir", medium, "1.0.0", "--key", world.key_file(ap.c), "--yes"
        )
    )
    ok(run_cli("show", "--config", medium_cfg, "--from-dir", medium, "--version", "1.0.0"))  # enforces nothing
    not_yet = run_cli("verify", "--config", medium_cfg, "--from-dir", medium, "--version", "1.0.0")
    assert not_yet.returncode == 1
    assert f"has 1 of 2 required approvals (by {short(ap.c)}); missing 1" in not_yet.stderr
    ok(
        run_cli(
            "approve", "--config", medium_cfg, "--from-dir", medium, "1.0.0", "--key", world.key_file(ap.b), "--yes"
        )
    )
    # The air-gapped side's import carries both approvals (verified against its approver keys on arrival).
    far_bucket = new_bucket_name()
    world.sides.client().create_bucket(Bucket=far_bucket)
    imported = ok(run_cli("import", "--config", world.approver_config(bucket=far_bucket), "--from", medium))
    assert "2 approval object(s) of demo 1.0.0 carried" in imported.stderr
    far_source = world.source(bucket=far_bucket)
    assert check(world, far_source)[0] == ["1.0.0"]


def test_mirror_carries_approvals_added_after_the_version_and_only_those_that_count(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="x")
    ok(world.approve("1.0.0", ap.a))
    far_bucket = new_bucket_name()
    world.sides.client().create_bucket(Bucket=far_bucket)
    near_cfg, far_cfg = world.approver_config(), world.approver_config(bucket=far_bucket)
    first = ok(run_cli("mirror", "--from-config", near_cfg, "--to-config", far_cfg))
    assert "1 approval object(s) of demo 1.0.0 carried" in first.stderr
    far_source = world.source(bucket=far_bucket)
    assert check(world, far_source)[0] == []

    ok(world.approve("1.0.0", ap.b))
    outsider = f"demo/1.0.0/approvals/{ap.outsider.fingerprint}.asc"
    world.put_object(outsider, world.forged(ap.outsider, "1.0.0", world.manifest_sha256("1.0.0")))
    client = world.sides.client()
    blobs = client.list_objects_v2(Bucket=far_bucket, Prefix="demo/_blobs/")["Contents"]
    again = ok(run_cli("mirror", "--from-config", near_cfg, "--to-config", far_cfg))
    assert "0 version(s) copied (none), 1 already there; 0 payload(s) copied" in again.stdout
    assert "1 approval object(s) of demo 1.0.0 carried" in again.stderr
    assert f"warning: approval object {outsider} not carried: it is signed by a key that is not among" in again.stderr
    assert client.list_objects_v2(Bucket=far_bucket, Prefix="demo/_blobs/")["Contents"] == blobs
    assert approval_keys(world, far_bucket, "1.0.0") == sorted(
        f"demo/1.0.0/approvals/{k.fingerprint}.asc" for k in (ap.a, ap.b)
    )
    assert check(world, far_source)[0] == ["1.0.0"]


def test_unpack_and_publish_from_a_bundle_refuse_an_unapproved_version_before_any_payload(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="x")
    ok(world.approve("1.0.0", ap.c))
    reader = write_yaml(world.tmp / "reader.yml", world.source())
    want = f"error: version 1.0.0 of bundle demo has 1 of 2 required approvals (by {short(ap.c)}); missing 1"
    dest = world.tmp / "unpacked"
    unpack = run_cli("unpack", "--config", reader, "--version", "1.0.0", dest)
    assert unpack.returncode == 1 and unpack.stdout == ""
    assert [ln for ln in unpack.stderr.splitlines() if ln.startswith("error:")] == [want]
    assert not dest.exists() or os.listdir(dest) == []
    target_bucket = new_bucket_name()
    world.sides.client().create_bucket(Bucket=target_bucket)
    target = write_yaml(
        world.tmp / "target.yml", {k: v for k, v in world.source(bucket=target_bucket).items() if k in S3_ONLY}
    )
    publish = run_cli("publish", "--from-config", reader, "--version", "1.0.0", "--target", target)
    assert publish.returncode == 1
    assert [ln for ln in publish.stderr.splitlines() if ln.startswith("error:")] == [want]
    assert "published before the failure" not in publish.stderr
    assert world.sides.client().list_objects_v2(Bucket=target_bucket).get("Contents", []) == []


def test_prune_deletes_the_approvals_of_the_versions_it_deletes(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="one")
    world.put("1.1.0", app="two")
    for version in ("1.0.0", "1.1.0"):
        ok(world.approve(version, ap.a))
    ok(run_cli("prune", "--config", world.approver_config(), "--keep", "1"))
    assert approval_keys(world, world.bucket, "1.0.0") == []
    assert approval_keys(world, world.bucket, "1.1.0") == [f"demo/1.1.0/approvals/{ap.a.fingerprint}.asc"]


# --------------------------------------------------------------------------- approvals that do not count


def _one_good_and(world: World, version: str, bad_key: str, bad_body: bytes, source: dict[str, Any]) -> str:
    """b approves properly, the bad object lies next to it: the version stays out; check's stderr."""
    ok(world.approve(version, world.approvers.b))
    world.put_object(bad_key, bad_body)
    listed, stderr = check(world, source)
    assert listed == []
    assert (
        refused_in(world, version, source)
        == f"error: version {version} of bundle demo has 1 of 2 required approvals (by {short(world.approvers.b)}); "
        "missing 1"
    )
    return stderr


def test_an_approval_by_a_key_that_is_not_an_approver_does_not_count(world: World) -> None:
    world.put("1.0.0", app="x")
    outsider = world.approvers.outsider
    key = f"demo/1.0.0/approvals/{outsider.fingerprint}.asc"
    body = world.forged(outsider, "1.0.0", world.manifest_sha256("1.0.0"))
    stderr = _one_good_and(world, "1.0.0", key, body, world.source())
    assert (
        f"warning: approval object {key} ignored: it is signed by a key that is not among approver_public_keys"
        in stderr
    )
    # The command refuses to make such an approval in the first place.
    run = world.approve("1.0.0", outsider)
    assert run.returncode == 1
    assert "is not among approver_public_keys" in run.stderr


def test_a_replayed_approval_of_an_older_version_does_not_count(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="one")
    ok(world.approve("1.0.0", ap.a))
    ok(world.approve("1.0.0", ap.b))
    source = world.source()
    assert check(world, source)[0] == ["1.0.0"]
    world.put("1.1.0", app="two")
    for k in (ap.a, ap.b):  # an attacker copies 1.0.0's approvals under 1.1.0
        world.put_object(
            f"demo/1.1.0/approvals/{k.fingerprint}.asc", world.get_object(f"demo/1.0.0/approvals/{k.fingerprint}.asc")
        )
    listed, stderr = check(world, source)
    assert listed == ["1.0.0"]  # the newest approved version; 1.1.0 is not
    assert "ignored: it approves demo 1.0.0, not demo 1.1.0: a replayed or misplaced approval" in stderr, stderr
    assert refused_in(world, "1.1.0", source) == (
        "error: version 1.1.0 of bundle demo has 0 of 2 required approvals; missing 2"
    )


def test_an_approval_of_other_manifest_bytes_does_not_count(world: World) -> None:
    """The version was overwritten after its approval: the statement binds the old manifest's SHA-256."""
    ap = world.approvers
    world.put("1.0.0", app="reviewed content")
    ok(world.approve("1.0.0", ap.a))
    ok(world.approve("1.0.0", ap.b))
    build = world.tmp / "other"
    (build / "app").mkdir(parents=True)
    (build / "app" / "app.txt").write_text("content nobody reviewed")
    world.sides.put(build, {"parts": [{"name": "app", "path": "app"}], "version": "1.0.0", "overwrite": True})
    source = world.source()
    listed, stderr = check(world, source)
    assert listed == []
    assert stderr.count("ignored: it binds other manifest bytes than this version's signed manifest") == 2, stderr
    assert refused_in(world, "1.0.0", source) == (
        "error: version 1.0.0 of bundle demo has 0 of 2 required approvals; missing 2"
    )


def test_an_approval_by_the_bundles_own_signing_key_does_not_count_even_when_listed(world: World) -> None:
    signer = world.sides.keys.signer
    world.put("1.0.0", app="x")
    source = world.source(approvers=[signer, world.approvers.a, world.approvers.b])
    key = f"demo/1.0.0/approvals/{signer.fingerprint}.asc"
    body = world.forged(signer, "1.0.0", world.manifest_sha256("1.0.0"))
    stderr = _one_good_and(world, "1.0.0", key, body, source)
    assert (
        f"ignored: it is signed by {short(signer)}, the key that signed the bundle: a bundle's signer cannot approve it"
        in stderr
    ), stderr
    run = world.approve("1.0.0", signer)
    assert run.returncode == 1
    assert "is the key that signed demo 1.0.0: the two-person rule needs a second person's key" in run.stderr


def test_an_approval_by_a_revoked_key_does_not_count(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="x")
    source = world.source(approvers=[ap.a, ap.b, ap.revoked])
    key = f"demo/1.0.0/approvals/{ap.revoked.fingerprint}.asc"
    body = world.forged(ap.revoked, "1.0.0", world.manifest_sha256("1.0.0"))
    stderr = _one_good_and(world, "1.0.0", key, body, source)
    assert f"warning: approval object {key} ignored: it is signed by a REVOKED approver key" in stderr, stderr


def test_two_approvals_by_the_same_key_count_once(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="x")
    # b's own approval, and a second statement by b stored under c's name.
    key = f"demo/1.0.0/approvals/{ap.c.fingerprint}.asc"
    body = world.forged(ap.b, "1.0.0", world.manifest_sha256("1.0.0"), approver=ap.b.fingerprint)
    stderr = _one_good_and(world, "1.0.0", key, body, world.source())
    assert f"a second approval by {short(ap.b)}; counted once" in stderr, stderr


def test_junk_in_the_approvals_folder_is_ignored_with_a_warning_each(world: World) -> None:
    ap = world.approvers
    world.put("1.0.0", app="x")
    ok(world.approve("1.0.0", ap.a))
    ok(world.approve("1.0.0", ap.b))
    world.put_object("demo/1.0.0/approvals/notes.txt", b"hello")
    world.put_object(f"demo/1.0.0/approvals/{ap.c.fingerprint}.asc", b"not signed")
    listed, stderr = check(world, world.source())
    assert listed == ["1.0.0"]
    warnings = [ln for ln in stderr.splitlines() if ln.startswith("warning: approval object")]
    assert len(warnings) == 2, stderr
    assert "notes.txt ignored: its name is not <approver fingerprint>.asc" in warnings[1] + warnings[0]
    assert "ignored: it is not one OpenPGP clear-signed message" in warnings[0] + warnings[1]


# ------------------------------------------------------------------------------------------- approve


def test_approve_without_a_terminal_and_without_yes_refuses_and_writes_nothing(world: World) -> None:
    world.put("1.0.0", app="x")
    args = [
        "approve",
        "--config",
        str(world.approver_config()),
        "1.0.0",
        "--key",
        str(world.key_file(world.approvers.b)),
    ]
    proc = subprocess.run(
        [str(venv_bin() / "offline-bundle"), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    record_output(proc.stdout, proc.stderr)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: approve asks for confirmation on a terminal and stdin is not one: run it in a terminal, "
        "or pass --yes to approve from a script"
    ]
    assert approval_keys(world, world.bucket, "1.0.0") == []


def test_approve_on_a_terminal_writes_only_after_yes(world: World) -> None:
    import pty

    world.put("1.0.0", app="x")
    args = [
        "approve",
        "--config",
        str(world.approver_config()),
        "1.0.0",
        "--key",
        str(world.key_file(world.approvers.b)),
    ]

    def answer(text: str) -> tuple[int, str]:
        controller, terminal = pty.openpty()
        proc = subprocess.Popen(
            [str(venv_bin() / "offline-bundle"), *args],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
            text=True,
        )
        os.close(terminal)
        os.write(controller, text.encode() + b"\n")
        out, err = proc.communicate(timeout=120)
        os.close(controller)
        record_output(out, err)
        return proc.returncode, out + err

    rc, text = answer("no")
    assert rc == 1
    assert "Type yes to approve" in text
    assert "error: not approved (the answer was not yes); nothing was written for demo 1.0.0" in text
    assert approval_keys(world, world.bucket, "1.0.0") == []
    rc, text = answer("yes")
    assert rc == 0, text
    assert approval_keys(world, world.bucket, "1.0.0") == [f"demo/1.0.0/approvals/{world.approvers.b.fingerprint}.asc"]
    records = ok(run_cli("records", "--config", world.approver_config(), "--json")).stdout.splitlines()
    approve = [json.loads(r) for r in records if json.loads(r)["event"] == "approve"]
    assert len(approve) == 1
    assert approve[0]["details"]["approver"] == world.approvers.b.fingerprint


def test_approve_with_a_wrong_passphrase_says_so_without_printing_it(world: World) -> None:
    world.put("1.0.0", app="x")
    env_name = "APPROVER_PASSPHRASE"
    run = run_cli(
        "approve",
        "--config",
        world.approver_config(),
        "1.0.0",
        "--key",
        world.key_file(world.approvers.a),
        "--yes",
        "--passphrase-env",
        env_name,
        env={env_name: "wrong passphrase value"},
    )
    assert run.returncode == 1
    assert "wrong passphrase value" not in run.stdout + run.stderr
    secret_lines = [ln for ln in world.approvers.a.secret_armored.splitlines() if len(ln) >= 16 and "-----" not in ln]
    assert secret_lines and not any(ln in run.stdout + run.stderr for ln in secret_lines)
    assert re.search(r"^error: .*--key \S+approver_a\.key", run.stderr, re.M), run.stderr


# ---------------------------------------------------------------------------------------------- diff


def test_diff_shows_a_changed_file_an_added_part_and_a_reused_payload(world: World) -> None:
    world.put("1.0.0", app="release one", lib="library")
    world.put("1.1.0", app="release two", lib="library", docs="manual")
    cfg = world.approver_config()
    text = ok(run_cli("diff", "--config", cfg, "1.0.0", "1.1.0")).stdout
    lines = text.splitlines()
    assert lines[0] == "bundle demo: 1.0.0 -> 1.1.0"
    assert "parts: 1 added, 0 removed, 1 changed, 1 unchanged" in lines
    assert "  + docs -> docs/  added" in lines
    assert "  ~ app -> app/  changed (files, payload)" in lines
    assert "  = lib -> lib/  unchanged" in lines
    assert "files: 1 added, 0 removed, 1 changed" in lines
    old_sha = hashlib.sha256(b"release one").hexdigest()
    new_sha = hashlib.sha256(b"release two").hexdigest()
    assert f"  ~ app/app.txt  sha256 {old_sha} -> {new_sha}" in lines
    assert f"  + docs/docs.txt  6 bytes 0644 sha256 {hashlib.sha256(b'manual').hexdigest()}" in lines
    assert "payloads reused: 1" in lines
    assert [ln for ln in lines if ln.startswith("  = lib: ")], text
    signer = world.sides.keys.signer.fingerprint
    assert sum(1 for ln in lines if f"signed by {signer}" in ln) == 2

    doc = json.loads(ok(run_cli("diff", "--config", cfg, "--json", "1.0.0", "1.1.0")).stdout)
    assert doc["parts"] == {"added": ["docs"], "removed": [], "changed": ["app"], "unchanged": ["lib"]}
    assert doc["files"]["changed"] == [
        {
            "part": "app",
            "path": "app.txt",
            "old": {"type": "file", "mode": "0644", "size": 11, "sha256": old_sha},
            "new": {"type": "file", "mode": "0644", "size": 11, "sha256": new_sha},
        }
    ]
    assert [(f["part"], f["path"]) for f in doc["files"]["added"]] == [("docs", "docs.txt")]
    assert doc["files"]["removed"] == []
    assert [p["part"] for p in doc["payloads_reused"]] == ["lib"]
    assert doc["old"]["version"] == "1.0.0" and doc["new"]["signer"] == signer

    # NEW alone: against the newest approved version before it (1.0.0 once approved, not an unapproved 1.1.0).
    world.put("1.2.0", app="release three", lib="library", docs="manual")
    alone = ok(run_cli("diff", "--config", cfg, "1.2.0"))
    assert alone.stdout.splitlines()[0] == "bundle demo: 1.1.0 -> 1.2.0"
    ok(world.approve("1.0.0", world.approvers.a))
    alone = ok(run_cli("diff", "--config", cfg, "1.2.0"))
    assert alone.stdout.splitlines()[0] == "bundle demo: 1.0.0 -> 1.2.0"
