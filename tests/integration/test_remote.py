"""offline/remote against real servers on loopback: an HTTPS file server with a private CA, a CONNECT proxy,
a git repository reached as file://, and a server answering in the GitHub REST API's shapes.

The server logs every byte range it sent, so "a resume transfers only the rest" is measured, not assumed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from offline_bundle.errors import BundleError
from offline_bundle.offline.remote.common import RemoteError
from offline_bundle.offline.remote.git import git_archive, git_read_file, git_resolve
from offline_bundle.offline.remote.github import asset_request, github_release_assets
from offline_bundle.offline.remote.http import Downloader
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.https_server import ForwardProxy, HttpsFileServer, Route

MiB = 1 << 20
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test decides about proxies; none leaks in from the environment the suite runs in."""
    for name in (*PROXY_VARIABLES, "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsFileServer]:
    with HttpsFileServer(tmp_path_factory.mktemp("pki")) as server:
        yield server


@pytest.fixture
def downloader(https: HttpsFileServer) -> Downloader:
    return Downloader(ca_bundle=str(https.ca_pem), backoff=0.01, log=lambda line: print(line))


def payload(n: int, seed: bytes) -> bytes:
    block = hashlib.sha256(seed).digest() * (64 * 1024 // 32)
    return b"".join(block[:-4] + i.to_bytes(4, "big") for i in range(n // len(block) + 1))[:n]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- HTTPS downloads -----------------------------------------------------------------------------


def test_download_verified(https: HttpsFileServer, downloader: Downloader, tmp_path: Path) -> None:
    body = payload(300_000, b"plain")
    url = https.add("/plain.bin", body)
    got = downloader.download(url, tmp_path / "plain.bin", sha256="sha256:" + sha(body).upper())
    assert got.path.read_bytes() == body
    assert (got.sha256, got.size) == (sha(body), len(body))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.bin"]


def test_resume_after_a_dropped_connection_transfers_only_the_rest(
    https: HttpsFileServer, downloader: Downloader, tmp_path: Path
) -> None:
    body = payload(8 * MiB, b"resume")
    url = https.add("/resume.bin", body)
    cut = 3 * MiB + 12_345
    https.drop_after["/resume.bin"] = cut

    got = downloader.download(url, tmp_path / "resume.bin", sha256=sha(body))

    assert got.path.read_bytes() == body
    first, second = https.requests_for("/resume.bin")
    assert (first.status, first.range, first.sent) == (200, None, cut)
    assert second.status == 206
    assert second.range == f"bytes={second.start}-"
    assert second.if_range == https.routes["/resume.bin"].tag()  # If-Range with the strong ETag
    # Everything received before the cut was kept, but for the last unfinished read (< 64 KiB).
    assert cut - 64 * 1024 < second.start <= cut
    assert second.sent == len(body) - second.start
    resent = first.sent + second.sent - len(body)
    print(f"measured: {len(body)} bytes, cut after {cut}, resumed at {second.start}, sent again {resent}")
    assert resent < 64 * 1024


def test_a_partial_file_of_an_earlier_run_is_resumed(https: HttpsFileServer, tmp_path: Path) -> None:
    body = payload(2 * MiB, b"earlier run")
    url = https.add("/earlier.bin", body)
    https.drop_after["/earlier.bin"] = MiB
    ca = str(https.ca_pem)

    with pytest.raises(RemoteError, match="kept in earlier.bin.partial to resume") as e:
        Downloader(ca_bundle=ca, retries=0).download(url, tmp_path / "earlier.bin", sha256=sha(body))
    assert url in str(e.value)
    kept = (tmp_path / "earlier.bin.partial").stat().st_size
    assert 0 < kept <= MiB
    assert not (tmp_path / "earlier.bin").exists()

    got = Downloader(ca_bundle=ca).download(url, tmp_path / "earlier.bin", sha256=sha(body))
    assert got.path.read_bytes() == body
    assert https.requests_for("/earlier.bin")[-1].range == f"bytes={kept}-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.bin"]


def test_a_changed_resource_starts_again_from_zero(https: HttpsFileServer, tmp_path: Path) -> None:
    old, new = payload(MiB, b"old"), payload(MiB + 7, b"new")
    url = https.add("/moving.bin", old)
    https.drop_after["/moving.bin"] = 500_000
    ca = str(https.ca_pem)
    with pytest.raises(RemoteError):
        Downloader(ca_bundle=ca, retries=0).download(url, tmp_path / "moving.bin")
    https.add("/moving.bin", new)  # another ETag now: If-Range does not match, the server sends 200

    got = Downloader(ca_bundle=ca).download(url, tmp_path / "moving.bin", sha256=sha(new))
    assert got.path.read_bytes() == new
    last = https.requests_for("/moving.bin")[-1]
    assert last.range is not None and last.if_range is not None
    assert (last.status, last.sent) == (200, len(new))


def test_a_server_without_ranges_is_downloaded_again_whole(
    https: HttpsFileServer, downloader: Downloader, tmp_path: Path
) -> None:
    body = payload(MiB, b"no ranges")
    url = https.add("/noranges.bin", body, ranges=False)
    https.drop_after["/noranges.bin"] = 400_000
    got = downloader.download(url, tmp_path / "noranges.bin", sha256=sha(body))
    assert got.path.read_bytes() == body
    assert [s.status for s in https.requests_for("/noranges.bin")] == [200, 200]


def test_wrong_bytes_are_refused_and_nothing_is_left(
    https: HttpsFileServer, downloader: Downloader, tmp_path: Path
) -> None:
    body = payload(200_000, b"wrong")
    url = https.add("/wrong.bin", body)
    https.wrong_bytes.add("/wrong.bin")
    try:
        with pytest.raises(RemoteError) as e:
            downloader.download(url, tmp_path / "out" / "wrong.bin", sha256=sha(body))
    finally:
        https.wrong_bytes.discard("/wrong.bin")
    message = str(e.value)
    assert url in message and sha(body) in message
    assert "SHA-256 mismatch" in message
    served = bytearray(body)
    served[0] ^= 0xFF
    assert sha(bytes(served)) in message
    assert list((tmp_path / "out").iterdir()) == []


def test_bytes_are_saved_as_sent_even_with_a_content_encoding(
    https: HttpsFileServer, downloader: Downloader, tmp_path: Path
) -> None:
    packed = gzip.compress(b"a tarball someone uploaded with Content-Encoding: gzip\n" * 100, mtime=0)
    url = https.add("/enc.tar.gz", packed, headers={"Content-Encoding": "gzip"})
    got = downloader.download(url, tmp_path / "enc.tar.gz", sha256=sha(packed))
    assert got.path.read_bytes() == packed  # what curl saves, and what a pinned digest is of


def test_503_is_retried_404_is_not(https: HttpsFileServer, downloader: Downloader, tmp_path: Path) -> None:
    body = b"after a 503\n"
    url = https.add("/busy.txt", body)
    https.fail_once["/busy.txt"] = 503
    assert downloader.download(url, tmp_path / "busy.txt").path.read_bytes() == body
    assert [s.status for s in https.requests_for("/busy.txt")] == [503, 200]

    with pytest.raises(RemoteError, match=r"/missing\.txt: HTTP 404"):
        downloader.download(https.url("/missing.txt"), tmp_path / "missing.txt")
    assert len(https.requests_for("/missing.txt")) == 1
    assert not list(tmp_path.glob("missing*"))


def test_gives_up_after_the_retries(https: HttpsFileServer, tmp_path: Path) -> None:
    https.routes["/down"] = Route(b"down\n", status=502)
    with pytest.raises(RemoteError, match="HTTP 502 .*gave up after 3 attempts"):
        Downloader(ca_bundle=str(https.ca_pem), retries=2, backoff=0.01).download(https.url("/down"), tmp_path / "d")
    assert len(https.requests_for("/down")) == 3


def test_the_private_ca_is_needed_and_requests_ca_bundle_is_honoured(
    https: HttpsFileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = https.add("/ca.txt", b"trusted\n")
    with pytest.raises(RemoteError, match="certificate verify failed"):
        Downloader(retries=3, backoff=0.01).download(url, tmp_path / "ca.txt")
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https.ca_pem))
    assert Downloader().download(url, tmp_path / "ca.txt").path.read_bytes() == b"trusted\n"
    # ca_bundle as PEM text, the form a pipeline's source carries
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert Downloader(ca_bundle=https.ca_pem.read_text()).download(url, tmp_path / "ca2.txt").size == 8


def test_a_file_already_there_is_not_fetched_again(
    https: HttpsFileServer, downloader: Downloader, tmp_path: Path
) -> None:
    body = b"already\n"
    url = https.add("/already.txt", body)
    (tmp_path / "already.txt").write_bytes(body)
    assert downloader.download(url, tmp_path / "already.txt", sha256=sha(body)).size == len(body)
    assert https.requests_for("/already.txt") == []


def test_headers_and_redirects(https: HttpsFileServer, downloader: Downloader, tmp_path: Path) -> None:
    https.add("/real.txt", b"moved here\n")
    https.routes["/old.txt"] = Route(b"", status=302, headers={"Location": https.url("/real.txt")})
    got = downloader.download(https.url("/old.txt"), tmp_path / "r.txt", headers={"X-Test": "yes"})
    assert got.path.read_bytes() == b"moved here\n"
    assert https.requests_for("/real.txt")[-1].headers.get("X-Test") == "yes"


def test_plain_http_only_for_loopback(tmp_path: Path) -> None:
    with HttpsFileServer(tmp_path / "unused", tls=False) as plain:
        url = plain.add("/p.txt", b"plain http\n")
        assert Downloader().download(url, tmp_path / "p.txt").path.read_bytes() == b"plain http\n"
    with pytest.raises(RemoteError, match="plain http:// is refused"):
        Downloader().download("http://example.invalid/p.txt", tmp_path / "q.txt")


def test_https_proxy_is_used_and_no_proxy_keeps_loopback_direct(
    https: HttpsFileServer, downloader: Downloader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = https.add("/proxied.txt", b"through the proxy\n")
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        assert downloader.download(url, tmp_path / "a.txt").path.read_bytes() == b"through the proxy\n"
        assert proxy.log == [("CONNECT", f"127.0.0.1:{https.port}")]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert downloader.download(url, tmp_path / "b.txt").size == len(b"through the proxy\n")
        assert len(proxy.log) == 1  # direct this time


def test_http_proxy_forwards_plain_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HttpsFileServer(tmp_path / "unused", tls=False) as plain, ForwardProxy() as proxy:
        url = plain.add("/fwd.txt", b"forwarded\n")
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert Downloader().download(url, tmp_path / "f.txt").path.read_bytes() == b"forwarded\n"
        assert proxy.log == [("GET", url)]


def test_a_dead_proxy_is_retried_then_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(RemoteError, match="gave up after 2 attempts"):
        Downloader(retries=1, backoff=0.01).download("https://127.0.0.1:1/x", tmp_path / "x")


# --- git -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    return make_repo(tmp_path_factory.mktemp("git") / "repo")


def test_git_resolve_head_branch_and_tags(repo: GitRepo) -> None:
    lines: list[str] = []
    assert git_resolve(repo.uri, None, log=lines.append) == repo.commits["third"]
    assert "refs/heads/main" in lines[0]
    assert git_resolve(repo.uri, "main") == repo.commits["third"]
    assert git_resolve(repo.uri, "refs/heads/main") == repo.commits["third"]
    assert git_resolve(repo.uri, "feature") == repo.commits["feature-1"]
    # an annotated tag resolves to its commit, not to the tag object
    assert git_resolve(repo.uri, "v1.0") == repo.commits["first"] != repo.commits["v1.0-tag-object"]
    assert git_resolve(repo.uri, "refs/tags/v1.0") == repo.commits["first"]
    assert git_resolve(repo.uri, "light") == repo.commits["first"]


def test_git_resolve_a_commit_hash(repo: GitRepo, tmp_path: Path) -> None:
    second = repo.commits["second"]  # no ref points at it: proven by fetching it
    assert git_resolve(repo.uri, second.upper(), cache_dir=tmp_path) == second
    with pytest.raises(RemoteError) as e:
        git_resolve(repo.uri, "0" * 40, cache_dir=tmp_path)
    assert repo.uri in str(e.value) and "0" * 40 in str(e.value)


def test_git_resolve_errors_name_the_uri_and_ref(repo: GitRepo, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="no branch or tag") as e:
        git_resolve(repo.uri, "nope")
    assert repo.uri in str(e.value) and "(nope)" in str(e.value)
    with pytest.raises(RemoteError) as e:
        git_resolve((tmp_path / "absent").as_uri(), "main")
    assert "absent (main)" in str(e.value)


def test_git_credentials_never_appear_in_messages() -> None:
    with pytest.raises(RemoteError) as e:
        git_resolve("https://someone:s3cret-token@127.0.0.1:9/org/repo.git", "main")
    assert "s3cret-token" not in str(e.value)
    assert "https://***@127.0.0.1:9/org/repo.git (main)" in str(e.value)


def test_a_moved_branch_resolves_to_its_new_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "moving")
    before = git_resolve(repo.uri, "feature")
    after_commit = repo.move_branch("feature", "feature-2", {"feature.txt": "moved on\n"})
    after = git_resolve(repo.uri, "feature")
    assert before == repo.commits["feature-1"] != after == after_commit
    # the old commit is still readable by hash, the new one shows the new file
    assert git_read_file(repo.uri, before, "feature.txt", cache_dir=tmp_path / "c") == b"on the feature branch\n"
    assert git_read_file(repo.uri, after, "feature.txt", cache_dir=tmp_path / "c") == b"moved on\n"


def test_git_read_file_uses_its_cache(repo: GitRepo, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(repo.path, copy)
    first = repo.commits["first"]
    cache = tmp_path / "cache"
    task = git_read_file(copy.as_uri(), first, "ci/tasks/build.yml", cache_dir=cache)
    assert task == b"platform: linux\nrun: {path: echo}\n"
    shutil.rmtree(copy)  # the repository is gone: a second file of that commit comes from the cache
    assert git_read_file(copy.as_uri(), first, "/README.md", cache_dir=cache) == b"first\n"
    with pytest.raises(RemoteError, match="no file 'src/app.py'") as e:
        git_read_file(copy.as_uri(), first, "src/app.py", cache_dir=cache)
    assert first in str(e.value)


def test_git_archive_is_deterministic(repo: GitRepo, tmp_path: Path) -> None:
    commit = repo.commits["second"]
    a = git_archive(repo.uri, commit, tmp_path / "a" / "src.tar.gz", prefix="src", cache_dir=tmp_path / "ca")
    b = git_archive(repo.uri, commit, tmp_path / "b" / "src.tar.gz", prefix="src", cache_dir=tmp_path / "cb")
    assert (a.sha256, a.size) == (b.sha256, b.size)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.sha256 == sha(a.path.read_bytes())
    raw = a.path.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header without a time
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        assert names == ["src/README.md", "src/ci/tasks/build.yml", "src/src/app.py"]
        member = tar.extractfile("src/README.md")
        assert member is not None and member.read() == b"second\n"
    assert not list((tmp_path / "a").glob("*.partial"))


def test_git_archive_of_a_missing_commit_leaves_nothing(repo: GitRepo, tmp_path: Path) -> None:
    with pytest.raises(RemoteError) as e:
        git_archive(repo.uri, "1" * 40, tmp_path / "x.tar.gz", cache_dir=tmp_path / "c")
    assert "1" * 40 in str(e.value)
    assert not (tmp_path / "x.tar.gz").exists()
    with pytest.raises(BundleError, match="40 hex"):
        git_archive(repo.uri, "main", tmp_path / "y.tar.gz", cache_dir=tmp_path / "c")


# --- GitHub releases -----------------------------------------------------------------------------


def release(rid: int, tag: str, assets: list[dict], *, draft: bool = False, pre: bool = False) -> dict:
    return {
        "id": rid,
        "tag_name": tag,
        "draft": draft,
        "prerelease": pre,
        "created_at": f"2025-01-{rid:02d}T00:00:00Z",
        "assets": assets,
    }


@pytest.fixture(scope="module")
def github(https: HttpsFileServer) -> dict:
    """Releases of acme/tool in the REST API's shapes, on two pages; asset files served too."""
    tool = b"#!/bin/sh\necho tool 2.0\n"
    https.add("/dl/tool-2.0.sh", tool)
    https.add("/dl/tool-1.9.sh", b"#!/bin/sh\necho tool 1.9\n")
    asset_20 = {
        "name": "tool-2.0.sh",
        "size": len(tool),
        "browser_download_url": https.url("/dl/tool-2.0.sh"),
        "url": https.url("/api/repos/acme/tool/releases/assets/20"),
        "digest": "sha256:" + sha(tool),
    }
    asset_19 = {"name": "tool-1.9.sh", "size": 24, "browser_download_url": https.url("/dl/tool-1.9.sh")}
    page1 = [
        release(5, "v3.0.0-rc.1", [], pre=True),
        release(4, "v9.9.9", [], draft=True),
        release(3, "v2.0.0", [asset_20]),
    ]
    page2 = [release(2, "v1.10.0", [asset_19]), release(1, "v1.9.0", [asset_19])]
    api = "/api/repos/acme/tool/releases"
    js = {"content_type": "application/json"}
    https.routes[api + "/assets/20"] = Route(status=302, headers={"Location": https.url("/dl/tool-2.0.sh")})
    https.add(api, json.dumps(page1).encode(), headers={"Link": f'<{https.url(api)}?page=2>; rel="next"'}, **js)
    https.add(api + "?page=2", json.dumps(page2).encode(), **js)
    https.add(api + "/tags/v1.9.0", json.dumps(page2[1]).encode(), **js)
    return {"owner": "acme", "repository": "tool", "github_api_url": https.url("/api/"), "tool": tool}


def test_github_newest_release_with_digest(github: dict, https: HttpsFileServer, tmp_path: Path) -> None:
    source = {k: v for k, v in github.items() if k != "tool"}
    tag, assets = github_release_assets(source, tag=None, ca_bundle=str(https.ca_pem))
    assert tag == "v2.0.0"  # not the draft, not the pre-release; SemVer order across both pages
    (asset,) = assets
    assert (asset.name, asset.size, asset.sha256) == ("tool-2.0.sh", len(github["tool"]), sha(github["tool"]))
    got = Downloader(ca_bundle=str(https.ca_pem)).download(asset.url, tmp_path / asset.name, sha256=asset.sha256)
    assert got.path.read_bytes() == github["tool"]

    # with a token, the asset's API URL (what a private repository needs), then the redirect to the file
    url, headers = asset_request(asset, {**source, "access_token": "ghp_x"})
    got = Downloader(ca_bundle=str(https.ca_pem)).download(url, tmp_path / "via-api", headers=headers)
    assert got.sha256 == asset.sha256
    asked = https.requests_for("/api/repos/acme/tool/releases/assets/20")[-1]
    assert (asked.headers["Accept"], asked.headers["Authorization"]) == ("application/octet-stream", "Bearer ghp_x")

    tag, _ = github_release_assets({**source, "pre_release": True}, tag=None, ca_bundle=str(https.ca_pem))
    assert tag == "v3.0.0-rc.1"
    tag, _ = github_release_assets({**source, "tag_filter": r"v1\.(.*)"}, tag=None, ca_bundle=str(https.ca_pem))
    assert tag == "v1.10.0"  # 10.0 > 9.0: versions, not strings


def test_github_release_by_tag_without_digest_and_with_a_token(github: dict, https: HttpsFileServer) -> None:
    source = {k: v for k, v in github.items() if k != "tool"} | {"access_token": "ghp_secret_value"}
    tag, assets = github_release_assets(source, tag="v1.9.0", ca_bundle=str(https.ca_pem))
    assert tag == "v1.9.0"
    assert [(a.name, a.sha256) for a in assets] == [("tool-1.9.sh", None)]
    asked = https.requests_for("/api/repos/acme/tool/releases/tags/v1.9.0")[-1]
    assert asked.headers["Authorization"] == "Bearer ghp_secret_value"
    assert asked.headers["Accept"] == "application/vnd.github+json"

    with pytest.raises(RemoteError, match=r"GitHub release 'v0\.1' of acme/tool: not found") as e:
        github_release_assets(source, tag="v0.1", ca_bundle=str(https.ca_pem))
    assert "ghp_secret_value" not in str(e.value)


def test_github_no_matching_release(github: dict, https: HttpsFileServer) -> None:
    source = {k: v for k, v in github.items() if k != "tool"} | {"tag_filter": "^release-"}
    with pytest.raises(RemoteError, match="acme/tool: none matches"):
        github_release_assets(source, tag=None, ca_bundle=str(https.ca_pem))


def test_progress_lines_and_no_credentials_in_them(
    https: HttpsFileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import offline_bundle.offline.remote.http as remote

    monkeypatch.setattr(remote, "PROGRESS_BYTES", 256 * 1024)
    body = payload(MiB, b"progress")
    https.add("/progress.bin", body)
    lines: list[str] = []
    url = f"https://user:pw-secret@127.0.0.1:{https.port}/progress.bin"
    got = Downloader(ca_bundle=str(https.ca_pem), log=lines.append).download(url, tmp_path / "p.bin")
    assert got.size == len(body)
    progress = [line for line in lines if " of 1.0 MiB, " in line]
    assert len(progress) >= 3
    assert progress[0].startswith(f"https://***@127.0.0.1:{https.port}/progress.bin: ")
    with pytest.raises(RemoteError) as e:
        Downloader(ca_bundle=str(https.ca_pem), log=lines.append).download(url + ".missing", tmp_path / "m")
    assert "***@" in str(e.value)
    assert not any("pw-secret" in line for line in [*lines, str(e.value)])


def test_ssh_with_a_private_key_never_prompts_and_removes_the_key(tmp_path: Path) -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("ob-ssh-*"))
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(RemoteError) as e:
        git_resolve("ssh://git@127.0.0.1:9/org/repo.git", "main", private_key=key)
    assert "ssh://git@127.0.0.1:9/org/repo.git (main): git ls-remote failed" in str(e.value)
    assert "Connection refused" in str(e.value)  # BatchMode: ssh fails at once, nothing waits for a prompt
    assert "not-a-real-key" not in str(e.value)
    assert set(Path(tempfile.gettempdir()).glob("ob-ssh-*")) == before
