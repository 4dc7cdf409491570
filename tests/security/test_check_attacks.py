"""``check`` against a carrier who controls the bucket but not the signing key.

The carrier adds junk objects, re-uploads or copies genuine commit objects and sets object times
and metadata at will. None of it may change which versions ``check`` lists or their order: only
commit objects that verify and name the version they are found under count, and the order comes
from what they sign. Real SeaweedFS, real gpg, ``assets/check`` as Concourse runs it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import ok, run_cli, write_yaml
from tests.support.concourse import make_source, run_asset
from tests.support.gpgkeys import GpgKeys, clearsign
from tests.support.sides import Sides, assert_clean_failure, small_tree

pytestmark = pytest.mark.integration

PARAMS = {"parts": [{"name": "a", "path": "a"}]}


@pytest.fixture
def two(sides: Sides, tmp_path: Path) -> Sides:
    """Versions 1.0.0 then 2.0.0, put as a pipeline would."""
    for v in ("1.0.0", "2.0.0"):
        sides.put(small_tree(tmp_path / f"build-{v}", a=f"content {v}"), {**PARAMS, "version": v})
    return sides


def commit_key(version: str) -> str:
    return f"demo/{version}/manifest.json.asc"


def read(s: Sides, key: str) -> bytes:
    return s.client().get_object(Bucket=s.bucket, Key=key)["Body"].read()


def write(s: Sides, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
    s.client().put_object(Bucket=s.bucket, Key=key, Body=data, Metadata=metadata or {})


def manifest_doc(s: Sides, version: str) -> dict[str, Any]:
    text = read(s, commit_key(version)).split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0]
    return json.loads(text)


def signed_manifest(keys: GpgKeys, doc: dict[str, Any]) -> bytes:
    """A commit object as the put side writes it: compact JSON, one entry a line, clear-signed."""
    body = "{" + ",\n".join(json.dumps({k: v}, separators=(",", ":"))[1:-1] for k, v in doc.items()) + "}"
    return clearsign(keys.signer, body.encode())


def check(s: Sides, version: str | None = None, **source: Any) -> tuple[list[str], list[str]]:
    """The versions ``check`` answers, and its warning lines."""
    req: dict[str, Any] = {"source": {**s.get_source, **source}}
    if version is not None:
        req["version"] = {"version": version}
    proc = run_asset("check", req)
    s.runs.append(proc)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    return [v["version"] for v in json.loads(proc.stdout)], warnings


def test_junk_and_a_reuploaded_old_commit_object_do_not_change_the_answer(two: Sides) -> None:
    before = (check(two)[0], check(two, "1.0.0")[0])
    assert before == (["2.0.0"], ["1.0.0", "2.0.0"])
    write(two, commit_key("zzz"), b"junk")  # does not parse as SemVer: auto used to fall back to arrival
    genuine = read(two, commit_key("1.0.0"))
    time.sleep(1.1)  # a newer object time than 2.0.0's, to the second
    write(two, commit_key("1.0.0"), genuine, {"offline-bundle-arrived-ns": str(time.time_ns() * 2)})
    for order in ("auto", "semver", "created"):
        latest, warnings = check(two, version_order=order)
        assert latest == ["2.0.0"], order
        assert len(warnings) == 1 and "skipped 1 object" in warnings[0] and "zzz" in warnings[0], warnings
        assert check(two, "1.0.0", version_order=order)[0] == ["1.0.0", "2.0.0"], order


def test_a_commit_object_copied_under_another_versions_key_is_skipped(two: Sides) -> None:
    write(two, commit_key("3.0.0"), read(two, commit_key("1.0.0")))
    latest, warnings = check(two)
    assert latest == ["2.0.0"]
    assert len(warnings) == 1 and "3.0.0" in warnings[0] and "replayed" in warnings[0], warnings
    assert check(two, "3.0.0")[0] == ["2.0.0"]  # not a version: as if gone, only the latest


def test_an_altered_newest_commit_object_is_skipped(two: Sides) -> None:
    forged = read(two, commit_key("2.0.0")).replace(b'"version":"2.0.0"', b'"version":"9.0.0"', 1)
    write(two, commit_key("9.0.0"), forged)
    latest, warnings = check(two)
    assert latest == ["2.0.0"]
    assert len(warnings) == 1 and "9.0.0" in warnings[0] and "BAD" in warnings[0], warnings


def test_semver_with_junk_still_answers(two: Sides) -> None:
    for junk in ("latest", "zzz", "20261125T213000Z"):
        write(two, commit_key(junk), b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{}\n")
    latest, warnings = check(two, version_order="semver")
    assert latest == ["2.0.0"]
    assert len(warnings) == 1 and "skipped 3 object" in warnings[0], warnings


def test_created_orders_by_the_signed_time_whatever_the_object_times_and_metadata(sides: Sides, tmp_path: Path) -> None:
    sides.put(small_tree(tmp_path / "b", a="x"), {**PARAMS, "version": "base"})
    doc = manifest_doc(sides, "base")
    signed_at = {"c": "2026-01-01T00:00:00Z", "a": "2026-01-02T00:00:00Z", "b": "2026-01-03T00:00:00Z"}
    # Uploaded newest-signed first, with arrival stamps that say the opposite.
    for i, v in enumerate(["b", "a", "c"]):
        body = signed_manifest(sides.keys, {**doc, "version": v, "created_at": signed_at[v]})
        write(sides, commit_key(v), body, {"offline-bundle-arrived-ns": str(10**18 + i)})
        time.sleep(1.1)  # object times to the second: each later than the one before
    sides.client().delete_object(Bucket=sides.bucket, Key=commit_key("base"))
    for order in ("created", "auto"):  # auto: the names do not parse as SemVer
        assert check(sides, "c", version_order=order)[0] == ["c", "a", "b"], order
        assert check(sides, version_order=order)[0] == ["b"], order


def test_a_verified_version_that_is_not_semver_under_semver_is_a_configuration_error(two: Sides) -> None:
    doc = manifest_doc(two, "2.0.0")
    nightly = {**doc, "version": "nightly", "created_at": "2099-01-01T00:00:00Z"}
    write(two, commit_key("nightly"), signed_manifest(two.keys, nightly))
    proc = run_asset("check", {"source": {**two.get_source, "version_order": "semver"}})
    assert_clean_failure(proc, "nightly of bundle demo is not SemVer")
    assert check(two)[0] == ["nightly"]  # auto: created order, and nightly was signed last


def test_a_wrong_trusted_key_reads_as_configuration_naming_both_keys(two: Sides) -> None:
    untrusted = two.keys.untrusted_signer
    proc = run_asset("check", {"source": {**two.get_source, "trusted_public_keys": [untrusted.public_armored]}})
    assert_clean_failure(proc, "not among trusted_public_keys")
    assert two.keys.signer.fingerprint in proc.stderr and untrusted.fingerprint in proc.stderr


def test_arrival_order_is_refused_with_the_reason(sides: Sides) -> None:
    proc = run_asset("check", {"source": {**sides.get_source, "version_order": "arrival"}})
    assert_clean_failure(proc, "arrival was replaced by created")


def test_batch_verification_gives_each_object_its_own_verdict(gpg_keys: GpgKeys) -> None:
    """gpg ends a ``--decrypt-files`` run at a BAD signature: whatever comes after it in the batch
    must still get its own verdict, the same one it gets when verified alone."""
    from offline_bundle import openpgp
    from offline_bundle.errors import VerificationError

    good = [clearsign(gpg_keys.signer, f'{{"n":{i}}}\n{{"m":{i}}}'.encode()) for i in range(24)]
    messages: list[bytes] = []
    for i, g in enumerate(good):
        if i % 4 == 1:
            messages.append(g.replace(b'"m"', b'"x"'))  # BAD signature
        elif i % 4 == 2:
            messages.append(g.replace(b"\n", b"\r\n"))  # CRLF: still good
        elif i % 4 == 3:
            messages.append(b"junk %d" % i)
        else:
            messages.append(g)
    messages.append(clearsign(gpg_keys.untrusted_signer, b'{"n":99}'))
    trusted = [gpg_keys.signer.public_armored]
    batch = openpgp.verify_clearsigned_many(messages, trusted)
    assert len(batch) == len(messages)
    for i, (message, verdict) in enumerate(zip(messages, batch, strict=True)):
        try:
            alone: object = openpgp.verify_clearsigned(message, trusted)
        except VerificationError as e:
            alone = e
        if isinstance(alone, openpgp.Verified):
            assert verdict == alone, i
            assert verdict.data == f'{{"n":{i}}}\n{{"m":{i}}}'.encode(), i
        else:
            assert type(verdict) is type(alone) and str(verdict) == str(alone), i
    kinds = [type(v).__name__ for v in batch]
    assert kinds.count("Verified") == 12 and kinds.count("UntrustedSigner") == 1
    assert sum(1 for v in batch if "BAD" in str(v)) == 6


def test_commands_that_pick_the_latest_version_are_not_steered_by_a_replay(two: Sides, tmp_path: Path) -> None:
    """unpack without --version, and prune's keep-N, use the same verified order as check."""
    write(two, commit_key("9.0.0"), read(two, commit_key("1.0.0")))  # an old commit object under a newer key
    config = write_yaml(tmp_path / "get.yml", two.get_source)
    dest = tmp_path / "dest"
    unpacked = ok(run_cli("unpack", "--config", config, dest))
    assert (dest / "version").read_text() == "2.0.0", unpacked.stderr
    assert "9.0.0" in unpacked.stderr and "replayed" in unpacked.stderr  # the one warning line
    # prune cannot tell what an unverifiable commit object references: it deletes nothing
    rw = write_yaml(tmp_path / "rw.yml", {**two.get_source, **make_source(two.server, two.bucket)})
    before = two.keys_under("demo/")
    pruned = run_cli("prune", "--config", rw, "--keep", "1", "--grace-hours", "0")
    assert_clean_failure(pruned, "do not verify")
    assert two.keys_under("demo/") == before
