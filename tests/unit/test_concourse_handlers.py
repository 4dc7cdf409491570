"""check, in and out as handlers over the one fake S3 client (real gpg, no server, no process).

As s3-resource tests its commands: the request as Concourse sends it, the store behind the
handler's factory, the answer Concourse would read. The same flows run against a real SeaweedFS
through ``assets/check|in|out`` in tests/integration; here each rule is pinned without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from offline_bundle.bundle.commit import read_commit
from offline_bundle.bundle.unpack import Unpacker
from offline_bundle.concourse.handlers import handle_check, handle_in, handle_out
from offline_bundle.core.config import InParams, Source, parse_source
from offline_bundle.errors import ConfigError, NotCommittedError, VerificationError
from offline_bundle.storage.base import Store
from offline_bundle.storage.s3.settings import S3Settings
from offline_bundle.storage.s3.store import S3Store
from tests.support.fake_s3 import FakeS3
from tests.support.gpgkeys import GpgKeys


class Bucket:
    """One fake bucket shared by every handler call of a test (what both sides of the gap see)."""

    def __init__(self) -> None:
        self.fake = FakeS3(("bkt",))
        self.opened: list[Source] = []

    def __call__(self, source: Source) -> Store:
        self.opened.append(source)
        return S3Store(S3Settings.from_source(source), client=self.fake)


@pytest.fixture
def bucket() -> Bucket:
    return Bucket()


@pytest.fixture
def logs() -> list[str]:
    return []


def put_source(keys: GpgKeys) -> dict[str, Any]:
    return {
        "bucket": "bkt",
        "name": "demo",
        "endpoint": "http://fake:8333",
        "signing_private_key": keys.signer.secret_armored,
        "recipient_public_keys": [keys.recipient.public_armored],
    }


def get_source(keys: GpgKeys, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": "bkt",
        "name": "demo",
        "endpoint": "http://fake:8333",
        "trusted_public_keys": [keys.signer.public_armored],
        "decryption_private_key": keys.recipient.secret_armored,
        **extra,
    }


def put(bucket: Bucket, keys: GpgKeys, build: Path, version: str, text: str, logs: list[str]) -> dict[str, Any]:
    (build / "app").mkdir(parents=True, exist_ok=True)
    (build / "app" / "app.txt").write_text(text)
    params = {"parts": [{"name": "app", "path": "app"}], "version": version}
    return handle_out({"source": put_source(keys), "params": params}, [str(build)], logs.append, bucket)


def test_out_then_check_then_in_over_one_bucket(
    bucket: Bucket, gpg_keys: GpgKeys, tmp_path: Path, logs: list[str]
) -> None:
    answer = put(bucket, gpg_keys, tmp_path / "build", "1.0.0", "one", logs)
    assert answer["version"] == {"version": "1.0.0"}
    meta = {m["name"]: m["value"] for m in answer["metadata"]}
    assert meta["name"] == "demo" and meta["parts"] == "app" and meta["uploaded_parts"] == "app"
    assert meta["signer"] == gpg_keys.signer.fingerprint
    assert meta["encrypted_to"] == gpg_keys.recipient.fingerprint
    # What reached the bucket: a commit object and one payload under _blobs/, nothing else.
    keys = sorted(bucket.fake.contents("bkt"))
    assert "demo/1.0.0/manifest.json.asc" in keys
    assert [k for k in keys if k.startswith("demo/_blobs/")] and all(
        k.startswith(("demo/_blobs/", "demo/1.0.0/", "demo/_records/")) for k in keys
    )

    put(bucket, gpg_keys, tmp_path / "build2", "1.1.0", "two", logs)
    assert handle_check({"source": get_source(gpg_keys)}, [], logs.append, bucket) == [{"version": "1.1.0"}]
    from_first = {"source": get_source(gpg_keys), "version": {"version": "1.0.0"}}
    assert handle_check(from_first, [], logs.append, bucket) == [{"version": "1.0.0"}, {"version": "1.1.0"}]

    dest = tmp_path / "dest"
    dest.mkdir()
    got = handle_in({"source": get_source(gpg_keys), "version": {"version": "1.0.0"}}, [str(dest)], logs.append, bucket)
    assert got["version"] == {"version": "1.0.0"}
    assert (dest / "app" / "app.txt").read_text() == "one"
    assert {m["name"]: m["value"] for m in got["metadata"]}["fetched_parts"] == "app"


def test_check_on_an_empty_bucket_lists_nothing(bucket: Bucket, gpg_keys: GpgKeys, logs: list[str]) -> None:
    assert handle_check({"source": get_source(gpg_keys)}, [], logs.append, bucket) == []


def test_check_skips_a_commit_object_that_does_not_verify(
    bucket: Bucket, gpg_keys: GpgKeys, tmp_path: Path, logs: list[str]
) -> None:
    put(bucket, gpg_keys, tmp_path / "build", "1.0.0", "one", logs)
    body = bucket.fake.contents("bkt")["demo/1.0.0/manifest.json.asc"]
    forged = body.replace(b'"1.0.0"', b'"9.0.0"')
    bucket.fake.put_object(Bucket="bkt", Key="demo/9.0.0/manifest.json.asc", Body=forged)
    assert handle_check({"source": get_source(gpg_keys)}, [], logs.append, bucket) == [{"version": "1.0.0"}]
    assert any("9.0.0" in line for line in logs), "the skipped object is not named in the log"


def test_check_with_required_approvals_lists_nothing_unapproved(
    bucket: Bucket, gpg_keys: GpgKeys, tmp_path: Path, logs: list[str]
) -> None:
    put(bucket, gpg_keys, tmp_path / "build", "1.0.0", "one", logs)
    source = get_source(gpg_keys, approver_public_keys=[gpg_keys.other_recipient.public_armored], required_approvals=1)
    assert handle_check({"source": source}, [], logs.append, bucket) == []


def test_in_of_a_version_that_is_not_there_names_the_nearest(
    bucket: Bucket, gpg_keys: GpgKeys, tmp_path: Path, logs: list[str]
) -> None:
    put(bucket, gpg_keys, tmp_path / "build", "1.0.0", "one", logs)
    dest = tmp_path / "dest"
    dest.mkdir()
    req = {"source": get_source(gpg_keys), "version": {"version": "1.0.1"}}
    with pytest.raises(NotCommittedError, match=r"version 1\.0\.1 of bundle demo is not committed.*nearest: 1\.0\.0"):
        handle_in(req, [str(dest)], logs.append, bucket)
    assert list(dest.iterdir()) == []


def test_in_refuses_a_payload_altered_in_the_bucket_and_writes_nothing(
    bucket: Bucket, gpg_keys: GpgKeys, tmp_path: Path, logs: list[str]
) -> None:
    put(bucket, gpg_keys, tmp_path / "build", "1.0.0", "one", logs)
    blob = next(k for k in bucket.fake.contents("bkt") if k.startswith("demo/_blobs/"))
    data = bytearray(bucket.fake.contents("bkt")[blob])
    data[-1] ^= 1
    bucket.fake.put_object(Bucket="bkt", Key=blob, Body=bytes(data))
    dest = tmp_path / "dest"
    dest.mkdir()
    req = {"source": get_source(gpg_keys), "version": {"version": "1.0.0"}}
    with pytest.raises(VerificationError, match="was altered"):
        handle_in(req, [str(dest)], logs.append, bucket)
    assert list(dest.iterdir()) == []


def test_the_handlers_refuse_a_bad_request_before_opening_a_store(
    bucket: Bucket, gpg_keys: GpgKeys, tmp_path: Path, logs: list[str]
) -> None:
    with pytest.raises(ConfigError, match="bucket"):
        handle_check({"source": {"name": "demo"}}, [], logs.append, bucket)
    with pytest.raises(ConfigError, match="usage: in <directory>"):
        handle_in({"source": get_source(gpg_keys), "version": {"version": "1"}}, [], logs.append, bucket)
    with pytest.raises(ConfigError, match="the request has no version"):
        handle_in({"source": get_source(gpg_keys)}, [str(tmp_path)], logs.append, bucket)
    with pytest.raises(ConfigError, match="parts"):
        handle_out({"source": put_source(gpg_keys), "params": {}}, [str(tmp_path)], logs.append, bucket)
    assert bucket.opened == []


def test_a_get_into_a_folder_writes_the_signed_texts_and_keeps_no_copy(
    bucket: Bucket, gpg_keys: GpgKeys, tmp_path: Path, logs: list[str]
) -> None:
    put(bucket, gpg_keys, tmp_path / "build", "1.0.0", "one", logs)
    source = parse_source(get_source(gpg_keys))
    store = bucket(source)
    trusted = read_commit(source, store, "1.0.0")
    dest = tmp_path / "dest"
    result = Unpacker(source, store, logs.append).get("1.0.0", InParams(), str(dest))
    assert (dest / "manifest.json.asc").read_bytes() == trusted.commit_bytes
    assert (dest / "manifest.json").read_bytes() == trusted.manifest_bytes
    assert (dest / "version").read_text() == "1.0.0"
    # What the get returns no longer holds the texts (tens of MB for a large bundle); the rest is kept.
    assert result.trusted.commit_bytes == b"" and result.trusted.manifest_bytes == b""
    assert result.trusted.manifest == trusted.manifest and result.trusted.signer == trusted.signer
