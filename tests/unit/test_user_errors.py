"""Error mapping without a store or a disk: typed errors, their hints, the retry policy and budget,
exit codes, YAML positions, nearest versions, and empty CLI variables."""

from __future__ import annotations

import errno
import ssl
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, SSLError

from offline_bundle.cli.common import load_config, read_yaml
from offline_bundle.cli.keys import public_key_path
from offline_bundle.core.versions import nearest
from offline_bundle.errors import (
    AccessDeniedError,
    ConfigError,
    NoSuchBucketError,
    PathError,
    StoreTLSError,
    StoreUnreachableError,
    path_error,
)
from offline_bundle.runtime import EXIT_FAILURE, EXIT_INTERNAL, failure_exit
from offline_bundle.storage.s3 import client


def test_retry_delays_and_the_default_budget() -> None:
    assert [client.retry_delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert client.retry_budget(5) == 15 and client.retry_budget(1) == 0 and client.retry_budget(12) == 71


def test_the_budget_follows_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(client.RETRIES_VARIABLE, raising=False)
    assert client.max_attempts() == 5 and client.retry_budget() == 15
    monkeypatch.setenv(client.RETRIES_VARIABLE, "2")
    assert client.retry_budget() == 1


class FakeHTTP:
    def __init__(self, status: int) -> None:
        self.status_code = status


class FakeEndpoint:
    host = "http://store.example:9000"


def refused() -> EndpointConnectionError:
    e = EndpointConnectionError(endpoint_url="http://store.example:9000/bkt?list-type=2")
    e.__context__ = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    return e


def test_the_retry_hook_announces_each_retry_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    hook = client.retry_handler(3)
    assert hook(attempts=1, caught_exception=refused(), endpoint=FakeEndpoint()) == 1
    assert hook(attempts=2, caught_exception=refused(), endpoint=FakeEndpoint()) == 2
    assert hook(attempts=3, caught_exception=refused(), endpoint=FakeEndpoint()) is False
    assert capsys.readouterr().err.splitlines() == [
        "retrying in 1 s (attempt 2 of 3): cannot connect to http://store.example:9000/ (connection refused)",
        "retrying in 2 s (attempt 3 of 3): cannot connect to http://store.example:9000/ (connection refused)",
    ]


def test_the_retry_hook_never_retries_tls_and_leaves_other_answers_alone(capsys: pytest.CaptureFixture[str]) -> None:
    hook = client.retry_handler(5)
    tls = SSLError(endpoint_url="https://x/", error=ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version"))
    assert hook(attempts=1, caught_exception=tls, endpoint=FakeEndpoint()) is False
    assert hook(attempts=1, response=(FakeHTTP(404), {"Error": {"Code": "NoSuchKey"}}), endpoint=FakeEndpoint()) is None
    assert hook(attempts=1, response=(FakeHTTP(200), {}), endpoint=FakeEndpoint()) is None
    assert hook(attempts=1, response=(FakeHTTP(503), {"Error": {"Code": "SlowDown"}}), endpoint=FakeEndpoint()) == 1
    assert "answered SlowDown (HTTP 503)" in capsys.readouterr().err


def client_error(code: str, status: int, op: str, **error: str) -> ClientError:
    return ClientError({"Error": {"Code": code, **error}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def test_store_errors_are_typed_and_say_what_to_fix() -> None:
    where = "s3://bkt at http://store.example:9000"
    e = client.s3_error(client_error("NoSuchBucket", 404, "ListObjectsV2", BucketName="bkt"), "listing demo/", where)
    assert isinstance(e, NoSuchBucketError)
    assert "bucket bkt does not exist at this endpoint; check bucket" in str(e)
    e = client.s3_error(client_error("AccessDenied", 403, "PutObject"), "writing demo/1/manifest.json.asc", where)
    assert isinstance(e, AccessDeniedError)
    assert str(e) == (
        f"writing demo/1/manifest.json.asc ({where}): S3 answered AccessDenied (HTTP 403): the credentials may not "
        "PutObject; give ones that may (or check access_key_id and secret_access_key)"
    )
    e = client.s3_error(refused(), "listing demo/", where)
    assert isinstance(e, StoreUnreachableError)
    assert "is the store running at http://store.example:9000/? check endpoint" in str(e)


@pytest.mark.parametrize(
    ("inner", "words"),
    [
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "speaks plain HTTP"),
        (ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed"), "add the store's CA"),
    ],
)
def test_tls_failures_get_their_hint(inner: ssl.SSLError, words: str) -> None:
    if "WRONG_VERSION" in str(inner):
        inner.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    e = client.s3_error(SSLError(endpoint_url="https://store.example:9000/bkt", error=inner), "listing demo/")
    assert isinstance(e, StoreTLSError)
    assert words in str(e) and "https://store.example:9000/" in str(e)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EROFS, "the file system is read-only: give a writable folder"),
        (errno.ENOSPC, "no space left on device: free some space or choose another folder"),
        (errno.EACCES, "permission denied: make it accessible to this user or choose another path"),
        (errno.ENOTDIR, "a part of the path is a file, not a folder"),
        (errno.EXDEV, "Invalid cross-device link"),  # no hint of ours: the system's own words
    ],
)
def test_path_errors_name_the_path_and_the_fix(code: int, words: str) -> None:
    e = path_error(OSError(code, "system words" if code != errno.EXDEV else "Invalid cross-device link", "/d/x"))
    assert str(e) == f"/d/x: {words}"
    assert str(path_error(OSError(code, "w"), "/dest", "cannot write into")).startswith("cannot write into /dest: ")


def test_an_os_error_with_a_path_exits_1_a_bug_exits_2() -> None:
    lines: list[str] = []
    assert failure_exit(OSError(errno.EROFS, "Read-only file system", "/mnt/dest"), lines.append) == EXIT_FAILURE
    assert lines == ["error: /mnt/dest: the file system is read-only: give a writable folder"]
    assert failure_exit(PathError("x"), lines.append) == EXIT_FAILURE
    assert failure_exit(TypeError("bug"), lines.append) == EXIT_INTERNAL
    assert failure_exit(OSError("no path"), lines.append) == EXIT_INTERNAL


def test_yaml_errors_give_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "c.yml"
    bad.write_text("bucket: b\nname: 'demo\n")
    with pytest.raises(ConfigError) as e:
        read_yaml(str(bad), "--config")
    assert str(e.value).startswith(f"--config {bad} is not valid YAML at line 3, column 1: ")
    with pytest.raises(PathError, match="it does not exist"):
        read_yaml(str(tmp_path / "none.yml"), "--config")


def test_a_key_given_twice_in_a_config_is_refused_where_it_stands(tmp_path: Path) -> None:
    twice = tmp_path / "twice.yml"
    twice.write_text("bucket: a\nname: demo\nbucket: b\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(twice), {})
    where = f"--config {twice} is not valid YAML at line 3, column 1"
    assert str(e.value) == f"{where}: the key 'bucket' is given twice in one map"


def test_empty_variables_are_unset() -> None:
    env = {"OFFLINE_BUNDLE_BUCKET": "b", "OFFLINE_BUNDLE_DISABLE_SSL": "", "OFFLINE_BUNDLE_CA_BUNDLE": ""}
    assert load_config(None, env) == {"bucket": "b"}


def test_nearest_versions() -> None:
    assert nearest(["1.0.0", "1.2.3", "1.3.0", "2.0.0"], "1.2.4") == ["1.2.3", "1.3.0"]
    assert nearest(["1.10.0", "1.9.0"], "1.9.5") == ["1.9.0", "1.10.0"]  # precedence, not string order
    assert nearest(["1.0.0"], "0.1.0") == ["1.0.0"]
    assert nearest(["20261125T213000Z", "20261126T000000Z"], "20261125T999999Z") == [
        "20261125T213000Z",
        "20261126T000000Z",
    ]


def test_public_key_beside_the_secret_key() -> None:
    assert public_key_path("keys/sign.key") == "keys/sign.pub.asc"
    assert public_key_path("decrypt.key") == "decrypt.pub.asc"
    assert public_key_path("mykey") == "mykey.pub.asc"
