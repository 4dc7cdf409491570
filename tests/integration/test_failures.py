"""What must fail, fails: one clear line, non-zero exit, and nothing of the payload in the destination."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.concourse import run_asset
from tests.support.gpgkeys import EXPIRED_KEY_VALID_AT, clearsign, clearsign_at
from tests.support.sides import Sides, assert_clean_failure, meta, small_tree

pytestmark = pytest.mark.integration

PARAMS = {"parts": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}], "version": "1.0.0"}


@pytest.fixture
def bundle(sides: Sides, tmp_path: Path) -> Sides:
    build = small_tree(tmp_path / "build", a="alpha " * 5000, b="beta")
    sides.put(build, PARAMS)
    return sides


def commit_key(version: str = "1.0.0") -> str:
    return f"demo/{version}/manifest.json.asc"


def read(s: Sides, key: str) -> bytes:
    return s.client().get_object(Bucket=s.bucket, Key=key)["Body"].read()


def write(s: Sides, key: str, data: bytes) -> None:
    s.client().put_object(Bucket=s.bucket, Key=key, Body=data)


def manifest_json(s: Sides, version: str = "1.0.0") -> bytes:
    """The signed JSON line inside a clear-signed commit object."""
    return read(s, commit_key(version)).split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0]


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_flipped_byte_in_a_payload(bundle: Sides, tmp_path: Path, where: str) -> None:
    blob = max(bundle.blobs(), key=lambda k: bundle.client().head_object(Bucket=bundle.bucket, Key=k)["ContentLength"])
    data = bytearray(read(bundle, blob))
    i = {"start": 0, "middle": len(data) // 2, "end": len(data) - 1}[where]
    data[i] ^= 0x01
    write(bundle, blob, bytes(data))
    dest = tmp_path / "dest"
    proc = bundle.in_("1.0.0", dest)
    assert_clean_failure(proc, "part a: payload demo/_blobs/", dest)
    assert "was altered" in proc.stderr


def test_truncated_payload(bundle: Sides, tmp_path: Path) -> None:
    blob = max(bundle.blobs(), key=lambda k: len(read(bundle, k)))
    write(bundle, blob, read(bundle, blob)[:-100])
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "where the signed manifest says", dest)


def test_flipped_byte_in_the_commit_object(bundle: Sides, tmp_path: Path) -> None:
    commit = read(bundle, commit_key())
    forged = commit.replace(b'"format_version":1', b'"format_version":1 ', 1)
    assert forged != commit
    write(bundle, commit_key(), forged.replace(b'"destination":"a/"', b'"destination":"x/"', 1))
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "signature is BAD", dest)


def test_signed_by_a_key_that_is_not_trusted(bundle: Sides, tmp_path: Path) -> None:
    untrusting = {**bundle.get_source, "trusted_public_keys": [bundle.keys.untrusted_signer.public_armored]}
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest, source=untrusting), "not among trusted_public_keys", dest)
    # ...and a commit object re-signed by the untrusted key over the very same manifest is refused too.
    write(bundle, commit_key(), clearsign(bundle.keys.untrusted_signer, manifest_json(bundle)))
    assert_clean_failure(bundle.in_("1.0.0", dest), "not among trusted_public_keys", dest)


def test_unsigned_bundle_is_refused_unless_allowed(sides: Sides, tmp_path: Path) -> None:
    unsigned_put = {k: v for k, v in sides.put_source.items() if k != "signing_private_key"}
    out = sides.out(
        small_tree(tmp_path / "b", a="x"), {"parts": [{"name": "a", "path": "a"}], "version": "1"}, source=unsigned_put
    )
    assert out.returncode == 0, out.stderr
    assert meta(sides.parse(out))["signer"] == "unsigned"
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("1", dest), "unsigned; refused", dest)
    sides.get("1", dest, source={**sides.get_source, "allow_unsigned": True})
    assert (dest / "a" / "a.txt").read_text() == "x"


def test_wrong_decryption_key(bundle: Sides, tmp_path: Path) -> None:
    wrong = {**bundle.get_source, "decryption_private_key": bundle.keys.other_recipient.secret_armored}
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest, source=wrong), "not to source.decryption_private_key", dest)


def test_replayed_commit_object_is_refused(bundle: Sides, tmp_path: Path) -> None:
    write(bundle, commit_key("2.0.0"), read(bundle, commit_key()))  # an old bundle under a newer name
    assert bundle.check() == ["1.0.0"]  # check lists only verified commits of their own version
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("2.0.0", dest), "replayed", dest)


def test_signature_by_a_since_expired_key_is_accepted_and_reported(bundle: Sides, tmp_path: Path) -> None:
    k = bundle.keys.expired_signer
    write(bundle, commit_key(), clearsign_at(k, manifest_json(bundle), EXPIRED_KEY_VALID_AT))
    source = {**bundle.get_source, "trusted_public_keys": [k.public_armored]}
    got = bundle.get("1.0.0", tmp_path / "dest", source=source)
    assert meta(got)["signer"] == k.fingerprint
    assert meta(got)["signer_key_expired"] == "true"
    assert "has expired since; accepted" in bundle.runs[-1].stderr


def test_signature_by_a_revoked_key_is_refused(bundle: Sides, tmp_path: Path) -> None:
    k = bundle.keys.revoked_signer
    write(bundle, commit_key(), clearsign(k, manifest_json(bundle)))
    dest = tmp_path / "dest"
    revoked = {**bundle.get_source, "trusted_public_keys": [k.public_armored]}
    assert_clean_failure(bundle.in_("1.0.0", dest, source=revoked), "REVOKED", dest)
    before = {**bundle.get_source, "trusted_public_keys": [k.public_armored_unrevoked]}
    bundle.get("1.0.0", tmp_path / "dest2", source=before)  # the same signature verifies without the revocation


def test_a_version_that_is_not_committed(sides: Sides, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("9.9.9", dest), "is not committed", dest)


@pytest.mark.parametrize("script", ["check", "in", "out"])
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"drop": "bucket"}, "source.bucket is required"),
        ({"drop": "name"}, "source.name is required"),
        ({"add": {"trusted_public_key": "x"}}, "unknown key trusted_public_key"),
        ({"add": {"allow_unsigned": "true"}}, "source.allow_unsigned must be true or false"),
    ],
)
def test_bad_source_fails_every_script(sides: Sides, tmp_path: Path, script: str, change: dict, words: str) -> None:
    source = dict(sides.get_source if script != "out" else sides.put_source)
    if "drop" in change:
        del source[change["drop"]]
    source.update(change.get("add", {}))
    request: dict = {"source": source}
    args: list[Path] = []
    if script == "in":
        request["version"] = {"version": "1"}
        args = [tmp_path / "dest"]
        args[0].mkdir()
    elif script == "out":
        request["params"] = {"parts": [{"name": "a", "path": "a"}]}
        args = [small_tree(tmp_path / "b", a="x")]
    proc = run_asset(script, request, *args)
    assert_clean_failure(proc, words, args[0] if script == "in" else None)
    assert sides.keys_under() == []  # nothing was written to the bucket


@pytest.mark.parametrize(
    ("stdin", "words"),
    [(b"not json", "not JSON"), (b"[]", "must be a JSON object"), (b'{"source": 1}', "source must be a map")],
)
def test_malformed_requests(stdin: bytes, words: str) -> None:
    assert_clean_failure(run_asset("check", stdin), words)


def test_out_with_a_glob_that_matches_nothing(sides: Sides, tmp_path: Path) -> None:
    build = small_tree(tmp_path / "b", a="x")
    proc = sides.out(build, {"parts": [{"name": "tile", "path": "tiles/*.pivotal"}], "version": "1"})
    assert_clean_failure(proc, "part tile: path 'tiles/*.pivotal' matches nothing")
    assert sides.keys_under() == []


def payload_keys(s: Sides, version: str = "1.0.0") -> dict[str, str]:
    """Each part's payload object: the manifest's key is relative to the bundle's folder."""
    doc = json.loads(manifest_json(s, version))
    return {p["name"]: "demo/" + p["payload"]["key"] for p in doc["parts"]}


def test_extended_payload(bundle: Sides, tmp_path: Path) -> None:
    key = payload_keys(bundle)["a"]
    write(bundle, key, read(bundle, key) + b"\0" * 10)
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "where the signed manifest says", dest)


def test_deleted_payload(bundle: Sides, tmp_path: Path) -> None:
    bundle.client().delete_object(Bucket=bundle.bucket, Key=payload_keys(bundle)["b"])
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "part b", dest)


def test_payload_swapped_with_another_parts(bundle: Sides, tmp_path: Path) -> None:
    keys = payload_keys(bundle)
    a, b = read(bundle, keys["a"]), read(bundle, keys["b"])
    write(bundle, keys["a"], b)
    write(bundle, keys["b"], a)
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "where the signed manifest says", dest)


def test_payload_swapped_with_another_bundles_of_the_same_size(sides: Sides, tmp_path: Path) -> None:
    params = {"parts": [{"name": "a", "path": "a"}], "version": "1"}
    sides.put(small_tree(tmp_path / "one", a="same size 1"), params)
    sides.put(small_tree(tmp_path / "two", a="same size 2"), {**params, "version": "2"})
    k1, k2 = payload_keys(sides, "1")["a"], payload_keys(sides, "2")["a"]
    assert len(read(sides, k1)) == len(read(sides, k2))
    write(sides, k1, read(sides, k2))
    dest = tmp_path / "dest"
    assert_clean_failure(sides.in_("1", dest), "SHA-256 differs from the signed manifest", dest)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (rb'"size":(\d+)', rb'"size":1\1'),
        (rb'"sha256":"([0-9a-f])', lambda m: b'"sha256":"' + (b"1" if m.group(1) == b"0" else b"0")),
        (rb'"destination":"a/"', b'"destination":"../"'),
        (rb'"path":"a.txt"', b'"path":"b.txt"'),
        (rb'"format_version":1', b'"format_version":2'),
    ],
)
def test_a_changed_field_breaks_the_signature(bundle: Sides, tmp_path: Path, old: bytes, new: object) -> None:
    import re

    commit = read(bundle, commit_key())
    forged = re.sub(old, new, commit, count=1)
    assert forged != commit
    write(bundle, commit_key(), forged)
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "signature is BAD", dest)


def test_a_trusted_signature_over_other_content(bundle: Sides, tmp_path: Path) -> None:
    """Version 1's text with version 2's (valid, trusted) signature block spliced in."""
    build = small_tree(tmp_path / "b2", a="other", b="content")
    bundle.put(build, {**PARAMS, "version": "2.0.0"})
    text1 = read(bundle, commit_key()).split(b"-----BEGIN PGP SIGNATURE-----")[0]
    sig2 = read(bundle, commit_key("2.0.0")).split(b"-----BEGIN PGP SIGNATURE-----")[1]
    write(bundle, commit_key(), text1 + b"-----BEGIN PGP SIGNATURE-----" + sig2)
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "signature is BAD", dest)


def test_signature_missing(bundle: Sides, tmp_path: Path) -> None:
    write(bundle, commit_key(), manifest_json(bundle))  # the bare JSON: the signature stripped
    dest = tmp_path / "dest"
    assert_clean_failure(bundle.in_("1.0.0", dest), "unsigned; refused", dest)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("recipient_public_keys", "signer", "has no usable encryption subkey"),
        (
            "recipient_public_keys",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "could not be imported",
        ),
        (
            "signing_private_key",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nZ2FyYmFnZQ==\n-----END PGP PRIVATE KEY BLOCK-----\n",
            "could not be imported",
        ),
    ],
)
def test_unusable_keys_are_refused_before_anything_moves(
    sides: Sides, tmp_path: Path, key: str, value: str, words: str
) -> None:
    if value == "signer":
        value = sides.keys.signer.public_armored
    source = {**sides.put_source, key: [value] if key.endswith("_keys") else value}
    proc = sides.out(
        small_tree(tmp_path / "b", a="x"), {"parts": [{"name": "a", "path": "a"}], "version": "1"}, source=source
    )
    assert_clean_failure(proc, words)
    assert sides.keys_under() == []
