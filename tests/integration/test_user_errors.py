"""Mistakes a user or the machine makes, through the real scripts and CLI: each is one line that
names the cause and the fix, exit 1, and a configuration mistake never reads like an attack.

Also Concourse's conventions: an empty value is an absent one (an unset ``((var))`` arrives as
``""``), and a get's files are what a task can check with ``sha256sum --strict -c``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import ok, run_cli, source_env
from tests.support.concourse import run_asset
from tests.support.gpgkeys import PASSPHRASE
from tests.support.sides import Sides, meta, small_tree

pytestmark = pytest.mark.integration

PARAMS = {"parts": [{"name": "a", "path": "a"}], "version": "1.0.0"}
# Generous bound on a run that fails against an unreachable store; the default budget is ~15 s.
WALL_BOUND = 60.0
ATTACK_WORDS = ("altered", "tamper", "integrity")


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a failed run with exit 1 (never a traceback, never exit 2)."""
    context = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 1, context
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, context
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, context
    print(errors[0])  # shown with -s, and with the captured output of a later failing assertion
    return errors[0]


@pytest.fixture
def bundle(sides: Sides, tmp_path: Path) -> Sides:
    sides.put(small_tree(tmp_path / "build", a="alpha " * 1000), PARAMS)
    return sides


# ------------------------------------------------------------------------------ empty means absent


def test_empty_values_are_absent_in_check_in_and_out(sides: Sides, tmp_path: Path) -> None:
    unset = {"signing_private_key_passphrase": "", "ca_bundle": "", "session_token": "", "encryption_passphrase": ""}
    put_source = {**sides.put_source, **unset, "allow_unencrypted": ""}
    params = {"parts": [{"name": "a", "path": "a", "destination": ""}], "version": "", "version_file": ""}
    answer = sides.put(small_tree(tmp_path / "b", a="x"), params, source=put_source)
    version = answer["version"]["version"]
    assert len(version) == 16 and version.endswith("Z")  # version "" is absent: a timestamp version
    get_source = {
        **sides.get_source,
        **unset,
        "decryption_private_key_passphrase": "",
        "trusted_public_keys": [sides.keys.signer.public_armored],
    }
    assert sides.check(source=get_source) == [version]
    dest = tmp_path / "dest"
    got = sides.get(version, dest, source=get_source, params={"parts": "", "skip_download": ""})
    assert meta(got)["parts"] == "a"
    assert (dest / "a" / "a.txt").read_text() == "x"
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["parts"][0]["destination"] == ""  # "" stays the root of the publish target


def test_an_empty_required_key_is_named(sides: Sides) -> None:
    proc = run_asset("check", {"source": {**sides.get_source, "bucket": ""}})
    assert "source.bucket is required and is empty" in one_error(proc)


def test_an_empty_item_in_a_key_list_is_named(sides: Sides) -> None:
    source = {**sides.get_source, "trusted_public_keys": [sides.keys.signer.public_armored, ""]}
    line = one_error(run_asset("check", {"source": source}))
    assert "source.trusted_public_keys[1] is empty" in line


def test_empty_environment_variables_are_unset(bundle: Sides) -> None:
    env = {**source_env(bundle.get_source), "OFFLINE_BUNDLE_CA_BUNDLE": "", "OFFLINE_BUNDLE_DISABLE_SSL": ""}
    proc = ok(run_cli("list", env=env))
    assert proc.stdout.startswith("1.0.0\t")


def test_skip_download_writes_no_sha256sums_and_a_full_get_one_sha256sum_accepts(bundle: Sides, tmp_path: Path) -> None:
    full = tmp_path / "full"
    bundle.get("1.0.0", full)
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=full, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and "a/a.txt: OK" in check.stdout, check.stderr
    skipped = tmp_path / "skipped"
    bundle.get("1.0.0", skipped, params={"skip_download": True})
    assert not (skipped / "SHA256SUMS").exists()
    assert "skip_download: no part fetched, so no SHA256SUMS is written" in bundle.runs[-1].stderr


# ------------------------------------------------------------------------------ decryption and keys


@pytest.fixture
def to_protected_key(sides: Sides, tmp_path: Path) -> Sides:
    """A bundle encrypted to a decryption key that has a passphrase."""
    put_source = {**sides.put_source, "recipient_public_keys": [sides.keys.recipient_pw.public_armored]}
    sides.put(small_tree(tmp_path / "build", a="secret plans"), PARAMS, source=put_source)
    sides.get_source = {**sides.get_source, "decryption_private_key": sides.keys.recipient_pw.secret_armored}
    return sides


def test_a_protected_decryption_key_without_its_passphrase_is_a_setting_not_an_attack(
    to_protected_key: Sides, tmp_path: Path
) -> None:
    s = to_protected_key
    fpr = s.keys.recipient_pw.fingerprint
    for passphrase in (None, ""):
        source = dict(s.get_source)
        if passphrase is not None:
            source["decryption_private_key_passphrase"] = passphrase
        dest = tmp_path / f"dest-{passphrase}"
        proc = s.in_("1.0.0", dest, source=source)
        line = one_error(proc)
        assert f"decryption_private_key {fpr} is protected by a passphrase" in line
        assert "set source.decryption_private_key_passphrase" in line
        assert not [w for w in ATTACK_WORDS if w in proc.stderr.lower()], proc.stderr
        assert os.listdir(dest) == []
    got = s.get("1.0.0", tmp_path / "ok", source={**s.get_source, "decryption_private_key_passphrase": PASSPHRASE})
    assert meta(got)["files"] == "1"


def test_a_wrong_decryption_passphrase(to_protected_key: Sides, tmp_path: Path) -> None:
    s = to_protected_key
    bad = "not-the-passphrase-4711"
    proc = s.in_("1.0.0", tmp_path / "d", source={**s.get_source, "decryption_private_key_passphrase": bad})
    line = one_error(proc)
    fpr = s.keys.recipient_pw.fingerprint
    assert f"decryption_private_key_passphrase is wrong for source.decryption_private_key {fpr}" in line
    assert not [w for w in ATTACK_WORDS if w in proc.stderr.lower()], proc.stderr
    assert bad not in proc.stderr


def test_a_payload_encrypted_to_another_key_names_both(bundle: Sides, tmp_path: Path) -> None:
    other = bundle.keys.other_recipient
    proc = bundle.in_(
        "1.0.0", tmp_path / "d", source={**bundle.get_source, "decryption_private_key": other.secret_armored}
    )
    line = one_error(proc)
    assert bundle.keys.recipient.encryption_subkey[-16:] in line  # the key it is encrypted to (gpg's key id)
    assert f"not to source.decryption_private_key {other.fingerprint}" in line
    assert not [w for w in ATTACK_WORDS if w in proc.stderr.lower()], proc.stderr


def test_a_protected_signing_key_without_its_passphrase(sides: Sides, tmp_path: Path) -> None:
    k = sides.keys.signer_pw
    source = {**sides.put_source, "signing_private_key": k.secret_armored, "signing_private_key_passphrase": ""}
    proc = sides.out(small_tree(tmp_path / "b", a="x"), PARAMS, source=source)
    line = one_error(proc)
    assert f"signing_private_key {k.fingerprint} is protected by a passphrase" in line
    assert "set source.signing_private_key_passphrase" in line
    assert sides.keys_under() == []


def test_a_wrong_symmetric_passphrase(sides: Sides, tmp_path: Path) -> None:
    put_source = {**sides.put_source, "encryption_passphrase": "right one"}
    del put_source["recipient_public_keys"]
    sides.put(small_tree(tmp_path / "b", a="x"), PARAMS, source=put_source)
    get_source = {**sides.get_source, "encryption_passphrase": "wrong one"}
    del get_source["decryption_private_key"]
    proc = sides.in_("1.0.0", tmp_path / "d", source=get_source)
    line = one_error(proc)
    assert "does not decrypt with source.encryption_passphrase" in line
    assert not [w for w in ATTACK_WORDS if w in proc.stderr.lower()], proc.stderr


def test_a_real_tampering_still_reads_as_one(bundle: Sides, tmp_path: Path) -> None:
    blob = bundle.blobs()[0]
    data = bytearray(bundle.client().get_object(Bucket=bundle.bucket, Key=blob)["Body"].read())
    data[len(data) // 2] ^= 1
    bundle.client().put_object(Bucket=bundle.bucket, Key=blob, Body=bytes(data))
    assert "was altered" in one_error(bundle.in_("1.0.0", tmp_path / "d"))


def test_wrong_trusted_key_names_the_signer_and_the_trusted_keys(bundle: Sides, tmp_path: Path) -> None:
    k = bundle.keys
    source = {
        **bundle.get_source,
        "trusted_public_keys": [k.untrusted_signer.public_armored, k.recipient.public_armored],
    }
    line = one_error(bundle.in_("1.0.0", tmp_path / "d", source=source))
    assert (
        f"signed by {k.signer.fingerprint}, which is not among trusted_public_keys "
        f"({k.untrusted_signer.fingerprint}, {k.recipient.fingerprint})"
    ) in line


def test_keygen_output_saved_to_a_file_works_as_a_list_item(bundle: Sides, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    proc = ok(run_cli("keygen", "--role", "decrypt", "--out", keys / "decrypt.key"))
    saved = keys / "saved.asc"
    saved.write_text(proc.stdout)  # what `> saved.asc` keeps: the armoured key alone
    assert proc.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert (keys / "decrypt.pub.asc").read_text() == proc.stdout
    assert oct((keys / "decrypt.key").stat().st_mode & 0o777) == "0o600"
    fpr = next(ln.split(": ", 1)[1] for ln in proc.stderr.splitlines() if ln.startswith("fingerprint: "))
    # The put side encrypts to it, as a list item read from the file; an older habit (the fingerprint
    # line saved in front of the key) reads the same.
    put_source = {**bundle.put_source, "recipient_public_keys": [f"fingerprint: {fpr}\n" + saved.read_text()]}
    answer = bundle.put(
        small_tree(tmp_path / "b", a="to the new key"), {**PARAMS, "version": "2.0.0"}, source=put_source
    )
    assert meta(answer)["encrypted_to"] == fpr
    get_source = {**bundle.get_source, "decryption_private_key": (keys / "decrypt.key").read_text()}
    bundle.get("2.0.0", tmp_path / "d", source=get_source)
    assert (tmp_path / "d" / "a" / "a.txt").read_text() == "to the new key"


# ------------------------------------------------------------------------------ versions and YAML


def test_a_version_that_is_not_committed_names_the_nearest(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "b", a="x")
    for v in ("1.0.0", "1.2.3", "1.3.0"):
        sides.put(build, {**PARAMS, "version": v})
    line = one_error(sides.in_("1.2.4", tmp_path / "d"))
    assert "version 1.2.4 of bundle demo is not committed in" in line
    assert line.endswith("nearest: 1.2.3, 1.3.0")


def test_bad_yaml_names_file_line_and_column(sides: Sides, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("bucket: b\nname: [demo\nendpoint: x\n")
    line = one_error(run_cli("list", "--config", bad))
    assert f"--config {bad} is not valid YAML at line 3, column 9" in line, line
    parts = tmp_path / "parts.yml"
    parts.write_text("- name: a\n  path: 'a\n")
    env = source_env(sides.put_source)
    line = one_error(run_cli("pack", "--parts-file", parts, "--to-dir", tmp_path / "out", env=env))
    assert f"--parts-file {parts} is not valid YAML at line 3, column 1" in line, line
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text("a: 1\n  b: 2\n")
    line = one_error(run_cli("fetch", tmp_path / "lock.yml", "--out", tmp_path / "f", "--vars", vars_file))
    assert f"{vars_file} is not valid YAML at line 2, column 4" in line, line


# ------------------------------------------------------------------------------ the local disk


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[callable]:
    mounted: list[Path] = []

    def make(name: str, opts: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], check=False)


def test_a_read_only_destination(bundle: Sides, mount: callable) -> None:
    ro = mount("ro", "ro,size=1m")
    line = one_error(bundle.in_("1.0.0", ro))
    assert f"cannot write into the destination {ro}: the file system is read-only: give a writable folder" in line


def test_a_destination_that_fills_up(bundle: Sides, mount: callable, tmp_path: Path) -> None:
    build = tmp_path / "many"
    (build / "a").mkdir(parents=True)
    for i in range(40):
        (build / "a" / f"f{i}").write_text(str(i))
    bundle.put(build, {**PARAMS, "version": "2.0.0"})
    full = mount("full", "size=4m,nr_inodes=20")
    dest = full / "dest"
    proc = bundle.in_("2.0.0", dest)
    line = one_error(proc)
    assert f"part a: cannot write into the destination {dest}: no space left on device: free some space" in line
    assert os.listdir(dest) == []
    assert not [w for w in ATTACK_WORDS if w in proc.stderr.lower()], proc.stderr


def test_a_destination_that_is_a_file(bundle: Sides, tmp_path: Path) -> None:
    dest = tmp_path / "file"
    dest.write_text("")
    line = one_error(run_cli("unpack", dest, env=source_env(bundle.get_source)))
    assert f"destination {dest} is a file, not a folder" in line


def test_a_medium_folder_that_does_not_exist(bundle: Sides, tmp_path: Path) -> None:
    missing = tmp_path / "no-medium"
    env = source_env(bundle.get_source)
    line = one_error(run_cli("verify", "--from-dir", missing, env=env))
    assert f"--from-dir {missing} does not exist" in line
    assert not missing.exists()  # reading never creates it
    line = one_error(run_cli("import", "--from", missing, env=source_env(bundle.put_source)))
    assert f"--from {missing} does not exist" in line


def test_an_unreadable_config_file(tmp_path: Path) -> None:
    line = one_error(run_cli("list", "--config", tmp_path))
    assert f"cannot read --config {tmp_path}: it is a folder where a file is expected" in line
    line = one_error(run_cli("list", "--config", tmp_path / "missing.yml"))
    assert f"cannot read --config {tmp_path / 'missing.yml'}: it does not exist" in line


# ------------------------------------------------------------------------------ the store


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_port_is_retried_visibly_and_given_up_in_bounded_time(sides: Sides) -> None:
    port = closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = run_asset("check", {"source": {**sides.get_source, "endpoint": endpoint}})
    took = time.monotonic() - started
    print(f"closed port: gave up after {took:.1f} s")
    line = one_error(proc)
    assert took < WALL_BOUND
    retries = [ln for ln in proc.stderr.splitlines() if ln.startswith("retrying in ")]
    assert retries == [
        f"retrying in {d} s (attempt {n} of 5): cannot connect to {endpoint}/ (connection refused)"
        for d, n in ((1, 2), (2, 3), (4, 4), (8, 5))
    ]
    assert f"is the store running at {endpoint}/? check endpoint" in line
    assert f"s3://{sides.bucket} at {endpoint}" in line


def test_the_retry_budget_follows_the_variable(sides: Sides) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    proc = run_asset(
        "check", {"source": {**sides.get_source, "endpoint": endpoint}}, env={"OFFLINE_BUNDLE_S3_RETRIES": "2"}
    )
    took = time.monotonic() - started
    assert "after 2 attempts over 1 s" in one_error(proc)
    assert took < 10


def test_https_against_a_plain_http_store(sides: Sides) -> None:
    endpoint = sides.server.endpoint.replace("http://", "https://")
    started = time.monotonic()
    proc = run_asset("check", {"source": {**sides.get_source, "endpoint": endpoint}})
    took = time.monotonic() - started
    print(f"https against http: gave up after {took:.1f} s")
    line = one_error(proc)
    assert took < WALL_BOUND
    assert f"the store at {endpoint}/ speaks plain HTTP: use an http:// endpoint or disable_ssl: true" in line
    assert "retrying" not in proc.stderr  # a setting, not an outage


def test_no_such_bucket_is_named(sides: Sides) -> None:
    line = one_error(run_asset("check", {"source": {**sides.get_source, "bucket": "no-such-bucket-here"}}))
    assert "bucket no-such-bucket-here does not exist at this endpoint; check bucket" in line


def test_access_denied_names_operation_bucket_and_key(sides: Sides, tmp_path: Path) -> None:
    ro = {**sides.put_source, "access_key_id": sides.get_source["access_key_id"]}
    ro["secret_access_key"] = sides.get_source["secret_access_key"]
    proc = sides.out(small_tree(tmp_path / "b", a="x"), PARAMS, source=ro)
    line = one_error(proc)
    assert "AccessDenied" in line and "the credentials may not " in line
    assert f"s3://{sides.bucket}" in line and "demo/" in line
    assert ro["secret_access_key"] not in proc.stderr
