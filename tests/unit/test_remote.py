"""offline/remote's pure parts: names in messages, URL policy, ranges, backoff, release choice, the SSH key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from offline_bundle.errors import ConfigError
from offline_bundle.offline.remote.common import (
    RemoteError,
    check_scheme,
    is_loopback,
    normalise_sha256,
    redact_uri,
    redact_url,
    redact_url_in_text,
)
from offline_bundle.offline.remote.git import git_env
from offline_bundle.offline.remote.github import Asset, _assets, choose_release, github_headers, release_version
from offline_bundle.offline.remote.http import backoff_delay, parse_content_range

HEX = "ab" * 32


def test_redact_url_hides_userinfo_and_secret_query_values() -> None:
    assert redact_url("https://user:pw@example.com/a/b?x=1") == "https://***@example.com/a/b?x=1"
    assert redact_url("https://token@example.com/") == "https://***@example.com/"
    shown = redact_url("https://s3.example.com/o?X-Amz-Signature=abc&X-Amz-Credential=k&part=2&access_token=t")
    assert "abc" not in shown and "=t" not in shown and "part=2" in shown
    assert redact_url("https://example.com/plain") == "https://example.com/plain"


def test_redact_uri_and_text() -> None:
    assert redact_uri("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    assert redact_uri("https://x:y@github.com/org/repo.git") == "https://***@github.com/org/repo.git"
    assert redact_uri("https://ghp_token@github.com/org/repo.git") == "https://***@github.com/org/repo.git"
    assert redact_uri("ssh://git@github.com/org/repo.git") == "ssh://git@github.com/org/repo.git"
    assert redact_uri("ssh://git:pw@github.com/org/repo.git") == "ssh://***@github.com/org/repo.git"
    text = "fatal: unable to access 'https://me:tok@host/r.git/': Could not resolve host"
    assert redact_url_in_text(text) == "fatal: unable to access 'https://***@host/r.git/': Could not resolve host"


def test_normalise_sha256() -> None:
    assert normalise_sha256("sha256:" + HEX.upper()) == HEX
    assert normalise_sha256(" " + HEX + "\n") == HEX
    for bad in ("sha512:" + HEX, HEX[:-1], "md5:x", ""):
        with pytest.raises(ConfigError, match="not a SHA-256"):
            normalise_sha256(bad)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("LOCALHOST", True)]
    + [("10.0.0.1", False), ("example.com", False), (None, False), ("", False)],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_scheme() -> None:
    check_scheme("https://example.com/x")
    check_scheme("http://127.0.0.1:8080/x")
    check_scheme("http://[::1]:8080/x")
    check_scheme("http://mirror.internal/x", allow_http=True)
    with pytest.raises(RemoteError, match=r"http://mirror\.internal/x: plain http:// is refused"):
        check_scheme("http://mirror.internal/x")
    with pytest.raises(RemoteError, match="unsupported URL scheme 'ftp'"):
        check_scheme("ftp://example.com/x")
    with pytest.raises(RemoteError) as e:
        check_scheme("ftp://u:secret@example.com/x")
    assert "secret" not in str(e.value)


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 100-199/1000") == (100, 199, 1000)
    assert parse_content_range("bytes 0-0/*") == (0, 0, None)
    assert parse_content_range(None) is None
    assert parse_content_range("bytes */1000") is None
    assert parse_content_range("items 1-2/3") is None


def test_backoff_delay() -> None:
    assert [backoff_delay(a, 1.0) for a in range(6)] == [1, 2, 4, 8, 16, 30]
    assert backoff_delay(0, 1.0, "3") == 3
    assert backoff_delay(0, 1.0, "3600") == 30
    assert backoff_delay(2, 0.5, "Wed, 21 Oct 2015 07:28:00 GMT") == 2


def test_release_version_and_tag_filter() -> None:
    assert release_version("v1.2.3", None) == "1.2.3"
    assert release_version("1.2.3", None) == "1.2.3"
    assert release_version("release-7", r"release-(\d+)") == "7"
    assert release_version("release-7", r"release-\d+") == "release-7"
    assert release_version("nightly", r"^v") is None
    with pytest.raises(ConfigError, match="tag_filter"):
        release_version("v1", "(")


def rel(rid: int, tag: str, *, draft: bool = False, pre: bool = False) -> dict:
    return {"id": rid, "tag_name": tag, "draft": draft, "prerelease": pre, "created_at": f"2025-02-{rid:02d}"}


def test_choose_release() -> None:
    releases = [rel(1, "v1.9.0"), rel(2, "v1.10.0"), rel(3, "v2.0.0-rc.1", pre=True), rel(4, "v3.0.0", draft=True)]
    assert choose_release(releases, {})["tag_name"] == "v1.10.0"  # type: ignore[index]
    assert choose_release(releases, {"pre_release": True})["tag_name"] == "v2.0.0-rc.1"  # type: ignore[index]
    only_pre = choose_release(releases, {"pre_release": True, "release": False})
    assert only_pre is not None and only_pre["tag_name"] == "v2.0.0-rc.1"
    assert choose_release(releases, {"order_by": "time"})["tag_name"] == "v1.10.0"  # type: ignore[index]
    assert choose_release(releases, {"tag_filter": "^nope"}) is None
    assert choose_release([], {}) is None


def test_choose_release_falls_back_to_time_when_a_version_does_not_parse() -> None:
    releases = [rel(1, "v10.0"), rel(2, "v9-final"), rel(3, "v2.0")]
    # "9-final" is no version: order by creation, newest (id 3) wins even though 10.0 > 2.0
    assert choose_release(releases, {})["tag_name"] == "v2.0"  # type: ignore[index]


def test_assets_take_the_digest_when_there_is_one() -> None:
    release = {
        "assets": [
            {"name": "a", "browser_download_url": "https://x/a", "size": 3, "digest": "sha256:" + HEX.upper()},
            {"name": "b", "browser_download_url": "https://x/b", "size": 4, "digest": None, "url": "https://api/b"},
            {"name": "c", "browser_download_url": "https://x/c", "size": 5, "digest": "sha512:00"},
        ]
    }
    assert _assets(release) == [
        Asset("a", "https://x/a", 3, HEX),
        Asset("b", "https://x/b", 4, None, "https://api/b"),
        Asset("c", "https://x/c", 5, None),
    ]


def test_github_headers() -> None:
    assert "Authorization" not in github_headers({})
    assert github_headers({"access_token": "t"})["Authorization"] == "Bearer t"


def test_git_env_never_prompts_and_keeps_the_key_private_and_brief() -> None:
    with git_env() as env:
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert "GIT_ASKPASS" not in env
    with git_env("-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----\n") as env:
        command = env["GIT_SSH_COMMAND"]
        key = Path(command.split(" -i ", 1)[1].split(" ", 1)[0])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert key.read_text().endswith("-----END OPENSSH PRIVATE KEY-----\n")
        assert "BatchMode=yes" in command
    assert not key.exists() and not key.parent.exists()
