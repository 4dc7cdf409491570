"""Sanity checks for the shared fixtures themselves.

If these fail, every other integration test's failure is noise: fix the
environment (``make install``) or the fixtures first.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.concourse import make_source, parse_stdout, run_asset
from tests.support.gpgkeys import (
    EXPIRED_KEY_VALID_AT,
    GpgError,
    GpgKeys,
    clearsign_at,
    colon_listing,
    detach_sign,
    encrypt_for,
    gpg,
    import_keys,
    key_validity,
    temporary_gnupghome,
)
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.integration


# -- SeaweedFS ----------------------------------------------------------------------


def test_rw_identity_can_put_and_get(seaweed: SeaweedServer, bucket: str) -> None:
    s3 = seaweed.client()
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hello"


def test_ro_identity_can_read_but_not_write(seaweed: SeaweedServer, bucket: str) -> None:
    seaweed.client().put_object(Bucket=bucket, Key="existing", Body=b"x")
    ro = seaweed.client(readonly=True)
    assert ro.get_object(Bucket=bucket, Key="existing")["Body"].read() == b"x"
    assert [o["Key"] for o in ro.list_objects_v2(Bucket=bucket)["Contents"]] == ["existing"]
    with pytest.raises(ClientError) as excinfo:
        ro.put_object(Bucket=bucket, Key="nope", Body=b"y")
    assert excinfo.value.response["Error"]["Code"] == "AccessDenied"


def test_buckets_are_fresh_and_dns_valid(seaweed: SeaweedServer, bucket: str) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9-]{1,61}[a-z0-9]", bucket)
    assert seaweed.client().list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_put_into_missing_bucket_fails_like_aws(seaweed: SeaweedServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        seaweed.client().put_object(Bucket="t-does-not-exist", Key="k", Body=b"")
    assert excinfo.value.response["Error"]["Code"] == "NoSuchBucket"


def test_non_empty_bucket_cannot_be_deleted_like_aws(seaweed: SeaweedServer, bucket: str) -> None:
    seaweed.client().put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as excinfo:
        seaweed.client().delete_bucket(Bucket=bucket)
    assert excinfo.value.response["Error"]["Code"] == "BucketNotEmpty"


def test_restart_keeps_endpoint_and_data(seaweed: SeaweedServer, bucket: str) -> None:
    endpoint = seaweed.endpoint
    seaweed.client().put_object(Bucket=bucket, Key="survives", Body=b"data")
    with seaweed.stopped():
        assert not seaweed.is_running()
    assert seaweed.endpoint == endpoint
    assert seaweed.client().get_object(Bucket=bucket, Key="survives")["Body"].read() == b"data"


# -- gpg keys -----------------------------------------------------------------------


def test_keys_are_distinct(gpg_keys: GpgKeys) -> None:
    fingerprints = [k.fingerprint for k in gpg_keys.all().values()]
    assert len(set(fingerprints)) == len(fingerprints) == 8
    for key in gpg_keys.all().values():
        assert re.fullmatch(r"[0-9A-F]{40}", key.fingerprint)
        assert key.public_armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        assert key.secret_armored.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")


def test_good_keys_are_valid(gpg_keys: GpgKeys) -> None:
    for name in ("signer", "signer_pw", "untrusted_signer", "recipient", "recipient_pw", "other_recipient"):
        key = getattr(gpg_keys, name)
        assert key_validity(key.public_armored, key.fingerprint) not in ("e", "r"), name


def test_expired_key_is_expired(gpg_keys: GpgKeys) -> None:
    key = gpg_keys.expired_signer
    assert key_validity(key.public_armored, key.fingerprint) == "e"


def test_revoked_key_is_revoked(gpg_keys: GpgKeys) -> None:
    key = gpg_keys.revoked_signer
    assert key.public_armored_unrevoked is not None
    assert key_validity(key.public_armored, key.fingerprint) == "r"
    assert key_validity(key.public_armored_unrevoked, key.fingerprint) not in ("e", "r")


def test_passphrase_keys_need_their_passphrase(gpg_keys: GpgKeys) -> None:
    key = gpg_keys.signer_pw
    assert key.passphrase == "correct horse battery"
    assert detach_sign(key, b"data")  # works with the passphrase
    with temporary_gnupghome() as home:
        import_keys(home, key.secret_armored)
        with pytest.raises(GpgError):
            gpg(home, "--local-user", key.fingerprint, "--detach-sign", input=b"data", passphrase="wrong")


def test_expired_signer_signature_made_while_valid(gpg_keys: GpgKeys) -> None:
    key = gpg_keys.expired_signer
    signed = clearsign_at(key, b"payload\n", EXPIRED_KEY_VALID_AT)
    assert signed.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    with temporary_gnupghome() as home:
        import_keys(home, key.public_armored)
        then = gpg(home, "--status-fd", "1", "--verify", input=signed, faked_time=EXPIRED_KEY_VALID_AT)
        assert b"[GNUPG:] GOODSIG" in then.stdout
        now = gpg(home, "--status-fd", "1", "--verify", input=signed, check=False)
        assert b"[GNUPG:] EXPKEYSIG" in now.stdout


def test_recipient_keys_encrypt_and_decrypt(gpg_keys: GpgKeys) -> None:
    ciphertext = encrypt_for(b"secret", [gpg_keys.recipient, gpg_keys.recipient_pw])
    for key in (gpg_keys.recipient, gpg_keys.recipient_pw):
        assert key.encryption_subkey is not None
        with temporary_gnupghome() as home:
            import_keys(home, key.secret_armored, passphrase=key.passphrase or "")
            out = gpg(home, "--decrypt", input=ciphertext, passphrase=key.passphrase or "")
            assert out.stdout == b"secret"
    with temporary_gnupghome() as home:
        import_keys(home, gpg_keys.other_recipient.secret_armored)
        assert gpg(home, "--decrypt", input=ciphertext, check=False).returncode != 0
        assert [r[0] for r in colon_listing(home, secret=True)].count("sec") == 1


# -- Concourse runner ---------------------------------------------------------------


def _stand_in_asset(directory: Path, name: str, body: str) -> Path:
    """A shell script named like a real asset, to test the runner itself."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_run_asset_contract(tmp_path: Path, seaweed: SeaweedServer, bucket: str) -> None:
    # Echo the environment and the request back as JSON; report argv on stderr.
    script = (
        'req=$(cat)\necho "args=$# $1" >&2\nprintf \'{"env":"%s","req":%s}\\n\' "$(env | sort | tr "\\n" ";")" "$req"\n'
    )
    source = make_source(seaweed, bucket, drop=["name"], extra=1)
    assert source["endpoint"] == seaweed.endpoint and "name" not in source and source["extra"] == 1

    check = run_asset(str(_stand_in_asset(tmp_path, "check", script)), {"source": source})
    out = parse_stdout(check)
    assert out["req"] == {"source": source}
    assert "BUILD_ID" not in out["env"] and "PATH=" in out["env"]
    assert "args=0" in check.stderr

    dest = tmp_path / "dest"
    dest.mkdir()
    get = parse_stdout(run_asset(str(_stand_in_asset(tmp_path, "in", script)), {"source": source}, dest))
    assert "BUILD_PIPELINE_NAME=" in get["env"] and "ATC_EXTERNAL_URL=" in get["env"]
    one_off = parse_stdout(run_asset(str(tmp_path / "in"), {"source": source}, dest, one_off=True, env={"EXTRA": "1"}))
    assert "BUILD_ID=" in one_off["env"] and "BUILD_PIPELINE_NAME=" not in one_off["env"]
    assert "EXTRA=1" in one_off["env"]


def test_parse_stdout_rejects_noise(tmp_path: Path) -> None:
    noisy = _stand_in_asset(tmp_path, "check", 'echo "log line"\necho "[]"\n')
    with pytest.raises(AssertionError, match="not JSON"):
        parse_stdout(run_asset(str(noisy), {}))
    twice = _stand_in_asset(tmp_path, "check", 'echo "[]"\necho "{}"\n')
    with pytest.raises(AssertionError, match="after the JSON"):
        parse_stdout(run_asset(str(twice), {}))
