"""Commit-object details: line ends, armour headers, who signed it, and the config around it.

Real gpg-produced commit objects from real puts on SeaweedFS, then changed the way a carrier or a
transfer tool could change them; ``assets/in``, ``assets/check`` and the CLI as users run them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import ok, run_cli, write_yaml
from tests.support.concourse import run_asset
from tests.support.gpgkeys import import_keys, temporary_gnupghome
from tests.support.sides import Sides, assert_clean_failure, small_tree

pytestmark = pytest.mark.integration

KEY = "demo/1.0.0/manifest.json.asc"


@pytest.fixture
def bundle(sides: Sides, tmp_path: Path) -> Sides:
    sides.put(
        small_tree(tmp_path / "build", a="alpha", b="beta"),
        {"parts": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}], "version": "1.0.0"},
    )
    return sides


def read(s: Sides, key: str = KEY) -> bytes:
    return s.client().get_object(Bucket=s.bucket, Key=key)["Body"].read()


def write(s: Sides, data: bytes, key: str = KEY) -> None:
    s.client().put_object(Bucket=s.bucket, Key=key, Body=data)


def test_a_crlf_commit_object_explodes_to_the_same_manifest_bytes(bundle: Sides, tmp_path: Path) -> None:
    """The signature covers lines, not their ends (OpenPGP hashes CRLF-ended lines): a commit object
    a transfer tool converted to CRLF still verifies, and manifest.json is the signed text as the
    writer signed it, the same bytes as from the original."""
    original = tmp_path / "original"
    bundle.get("1.0.0", original)
    lf = (original / "manifest.json").read_bytes()
    assert b"\r" not in lf and b"\n" in lf, "the manifest has no line breaks: the test would prove nothing"
    crlf = read(bundle).replace(b"\n", b"\r\n")
    write(bundle, crlf)
    dest = tmp_path / "crlf"
    bundle.get("1.0.0", dest)
    assert (dest / "manifest.json").read_bytes() == lf
    assert (dest / "manifest.json.asc").read_bytes() == crlf  # the commit object as fetched
    # gpg agrees that the exploded commit object is a good signature over that text
    with temporary_gnupghome() as home:
        import_keys(home, bundle.keys.signer.public_armored)
        proc = subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--status-fd", "2", "--output", "-", "--decrypt"],
            input=(dest / "manifest.json.asc").read_bytes(),
            capture_output=True,
            check=False,
        )
    assert b"[GNUPG:] GOODSIG" in proc.stderr, proc.stderr
    assert proc.stdout.replace(b"\r\n", b"\n").rstrip(b"\n") == lf
    # and `verify` of the bundle with the CRLF commit object succeeds
    config = write_yaml(tmp_path / "get.yml", bundle.get_source)
    assert "OK demo 1.0.0" in ok(run_cli("verify", "--config", config, "--version", "1.0.0")).stdout


@pytest.mark.parametrize("header", [b"Hash: SHA1", b"Hash: MD5", b"Hash: garbage", b"Hash: SHA256\nComment: x"])
def test_a_changed_hash_header_is_reported_as_an_altered_commit_object(
    bundle: Sides, tmp_path: Path, header: bytes
) -> None:
    commit = read(bundle)
    assert b"\nHash: SHA256\n" in commit
    write(bundle, commit.replace(b"\nHash: SHA256\n", b"\n" + header + b"\n", 1))
    dest = tmp_path / "dest"
    proc = bundle.in_("1.0.0", dest)
    assert_clean_failure(proc, "altered", dest)
    assert "trusted" not in proc.stderr  # not a question of keys
    # check skips it as what it is
    check = run_asset("check", {"source": bundle.get_source})
    assert check.returncode == 0 and json.loads(check.stdout) == [], check.stderr
    warnings = [ln for ln in check.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "altered" in warnings[0] and "trusted" not in warnings[0], check.stderr


def test_a_wrong_trusted_key_reads_as_configuration_naming_both_keys(bundle: Sides, tmp_path: Path) -> None:
    other = bundle.keys.untrusted_signer
    source = {**bundle.get_source, "trusted_public_keys": [other.public_armored]}
    dest = tmp_path / "dest"
    proc = bundle.in_("1.0.0", dest, source=source)
    assert_clean_failure(proc, "not among trusted_public_keys", dest)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("error:"))
    assert bundle.keys.signer.fingerprint in line and other.fingerprint in line


@pytest.mark.parametrize("prefix", ["/transfers/", "transfers//", "a//b/"])
def test_a_prefix_stores_would_rewrite_is_refused(sides: Sides, tmp_path: Path, prefix: str) -> None:
    for proc in (
        run_asset("check", {"source": {**sides.get_source, "prefix": prefix}}),
        sides.out(
            small_tree(tmp_path / "b", a="x"),
            {"parts": [{"name": "a", "path": "a"}]},
            source={**sides.put_source, "prefix": prefix},
        ),
    ):
        assert_clean_failure(proc, "must not start with '/' or contain '//'")
    assert sides.keys_under("") == []


def test_a_prefix_without_a_slash_is_prepended_verbatim(sides: Sides, tmp_path: Path) -> None:
    put = {**sides.put_source, "prefix": "team-a-"}
    sides.put(
        small_tree(tmp_path / "b", a="x"), {"parts": [{"name": "a", "path": "a"}], "version": "1.0.0"}, source=put
    )
    assert "team-a-demo/1.0.0/manifest.json.asc" in sides.keys_under("team-a-")
    assert sides.check(source={**sides.get_source, "prefix": "team-a-"}) == ["1.0.0"]


@pytest.mark.parametrize(
    "key", ["signing_private_key_passphrase", "encryption_passphrase", "decryption_private_key_passphrase"]
)
def test_a_passphrase_with_a_line_break_is_one_clear_configuration_error(
    sides: Sides, tmp_path: Path, key: str
) -> None:
    secret = "correct horse\nbattery staple"
    if key == "decryption_private_key_passphrase":
        proc = sides.in_("1.0.0", tmp_path / "dest", source={**sides.get_source, key: secret})
    else:
        source = {**sides.put_source, key: secret}
        proc = sides.out(small_tree(tmp_path / "b", a="x"), {"parts": [{"name": "a", "path": "a"}]}, source=source)
    assert_clean_failure(proc, f"{key} contains a line break")
    assert proc.returncode == 1
    assert "battery staple" not in proc.stderr and "correct horse" not in proc.stderr
    assert json.dumps(secret) not in proc.stderr
