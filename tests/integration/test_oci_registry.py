"""offline/oci against a real registry (Debian's docker-registry, distribution 2.8) on loopback, with skopeo
as the independent client that puts images in and reads back what ``push`` wrote."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from offline_bundle.offline.oci.publish import publish_images
from offline_bundle.offline.oci.reference import (
    REF_NAME,
    REPOSITORY_ANNOTATION,
    ImageRef,
    RegistryError,
    parse_image_ref,
)
from offline_bundle.offline.oci.registry import RegistryClient
from tests.support.needs import require
from tests.support.registry import (
    REGISTRY_BIN,
    SKOPEO,
    BearerProxy,
    RegistryServer,
    TestImage,
    file,
    folder,
    gzip_layer,
    hardlink,
    layer_tar,
    make_image,
    opaque,
    push_raw,
    skopeo,
    skopeo_inspect_raw,
    skopeo_push,
    symlink,
    whiteout,
    write_docker_config,
)
from tests.support.tls import make_ca


@pytest.fixture(autouse=True)
def _real_registry_and_skopeo() -> None:
    require(
        REGISTRY_BIN.exists() and shutil.which(SKOPEO) is not None,
        "docker-registry or skopeo is not installed",
        fix="make install runs scripts/install-system-deps.sh",
    )


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """One real registry for the session; tests isolate themselves by repository name."""
    server = RegistryServer(tmp_path_factory.mktemp("registry"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Pushed:
    amd64: TestImage
    arm64: TestImage
    index_digest: str
    ref: ImageRef  # host/test/multi:1


def _base_layer() -> bytes:
    return gzip_layer(
        [
            folder("etc"),
            file("etc/os-release", "ID=test\n"),
            file("etc/obsolete", "to be whited out"),
            folder("var/cache"),
            file("var/cache/old", "hidden by an opaque folder"),
            file("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
            symlink("bin/alias", "tool"),
        ]
    )


def _top_layer(label: str = "") -> bytes:
    return gzip_layer(
        [
            whiteout("etc/obsolete"),
            opaque("var/cache"),
            file("var/cache/new", "fresh"),
            hardlink("bin/tool2", "bin/tool"),
            file("home/app/hello.txt", f"hello {label}", uid=1000, gid=1000),
        ]
    )


def unique_image(label: str | None = None, *, big: int = 0) -> TestImage:
    label = label or secrets.token_hex(4)
    layers = [_base_layer(), _top_layer(label)]
    if big:
        layers.append(gzip_layer([file("blob.bin", secrets.token_bytes(big))]))
    return make_image(layers, env=["PATH=/bin", f"LABEL={label}"], user="1000:1000", label=label)


@pytest.fixture(scope="session")
def pushed(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    """A multi-arch (amd64 + arm64) index at test/multi:1, pushed by skopeo."""
    amd64 = make_image([_base_layer(), _top_layer("amd64")], env=["PATH=/bin", "A=1"], user="app")
    arm64 = make_image([_base_layer()], architecture="arm64")
    ref = parse_image_ref(f"{registry.host}/test/multi:1")
    index_digest = skopeo_push(tmp_path_factory.mktemp("push"), [amd64, arm64], f"{registry.host}/test/multi:1")
    return Pushed(amd64, arm64, index_digest, ref)


def _client(**kwargs: object) -> RegistryClient:
    kwargs.setdefault("retries", 3)
    client = RegistryClient(docker_config=Path("/nonexistent/config.json"), **kwargs)  # type: ignore[arg-type]
    client.backoff = 0.01
    return client


# -- resolve --------------------------------------------------------------------------------------


def test_resolve_tag_to_index_and_platform_manifest(pushed: Pushed) -> None:
    resolved = _client().resolve(pushed.ref)
    assert resolved.ref == pushed.ref
    assert resolved.index_digest == pushed.index_digest
    assert resolved.digest == pushed.amd64.digest
    assert resolved.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert resolved.size == len(pushed.amd64.manifest)


def test_resolve_other_platform_and_missing_platform(pushed: Pushed) -> None:
    assert _client(platform="linux/arm64").resolve(pushed.ref).digest == pushed.arm64.digest
    with pytest.raises(RegistryError, match=r"no linux/s390x manifest .*has linux/amd64, linux/arm64"):
        _client(platform="linux/s390x").resolve(pushed.ref)


def test_resolve_by_digest(pushed: Pushed) -> None:
    by_index = _client().resolve(pushed.ref.with_digest(pushed.index_digest))
    assert (by_index.index_digest, by_index.digest) == (pushed.index_digest, pushed.amd64.digest)
    by_manifest = _client().resolve(parse_image_ref(f"{pushed.ref.name}@{pushed.amd64.digest}"))
    assert (by_manifest.index_digest, by_manifest.digest) == (None, pushed.amd64.digest)


def test_resolve_unknown_tag_names_it(pushed: Pushed) -> None:
    with pytest.raises(RegistryError, match=rf"{pushed.ref.name}:nope: HTTP 404 \(MANIFEST_UNKNOWN"):
        _client().resolve(parse_image_ref(f"{pushed.ref.name}:nope"))


def test_moved_tag(registry: RegistryServer, tmp_path: Path) -> None:
    """A lock records tag + digest; when the tag moves, the digest still gets the locked image."""
    name = f"{registry.host}/test/moving"
    first, second = unique_image("first"), unique_image("second")
    skopeo_push(tmp_path, [first], f"{name}:stable")
    client = _client()
    locked = client.resolve(parse_image_ref(f"{name}:stable"))
    assert locked.digest == first.digest
    skopeo_push(tmp_path, [second], f"{name}:stable")
    assert client.resolve(parse_image_ref(f"{name}:stable")).digest == second.digest
    pinned = client.resolve(parse_image_ref(f"{name}:stable@{first.digest}"))
    assert pinned.digest == first.digest
    saved = client.save(pinned, tmp_path / "out", basename="moving")
    with tarfile.open(saved.rootfs_tarball) as tar:  # type: ignore[arg-type]
        assert tar.extractfile("rootfs/home/app/hello.txt").read() == b"hello first"  # type: ignore[union-attr]


# -- save -----------------------------------------------------------------------------------------


def test_save_writes_archive_and_rootfs(pushed: Pushed, tmp_path: Path) -> None:
    client = _client()
    resolved = client.resolve(pushed.ref)
    saved = client.save(resolved, tmp_path, basename="multi")
    assert saved.oci_archive == tmp_path / "multi.oci.tar"
    assert saved.rootfs_tarball == tmp_path / "multi.rootfs.tgz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi.oci.tar", "multi.rootfs.tgz"]  # no temp left
    for path in (saved.oci_archive, saved.rootfs_tarball):
        assert saved.sha256[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()

    with tarfile.open(saved.oci_archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert set(tar.getnames()) == {"blobs", "blobs/sha256", "index.json", "oci-layout"} | {
            f"blobs/sha256/{d[7:]}" for d in pushed.amd64.blobs
        }
    (descriptor,) = index["manifests"]
    assert descriptor["digest"] == pushed.amd64.digest
    assert descriptor["annotations"][REF_NAME] == "1"
    assert descriptor["annotations"][REPOSITORY_ANNOTATION] == f"{pushed.ref.registry}/test/multi"
    assert descriptor["platform"] == {"os": "linux", "architecture": "amd64"}

    with tarfile.open(saved.rootfs_tarball, "r:gz") as tar:  # type: ignore[arg-type]
        names = set(tar.getnames())
        read = lambda n: tar.extractfile(n).read()  # noqa: E731
        assert json.loads(read("metadata.json")) == {"env": ["PATH=/bin", "A=1"], "user": "app"}
        assert read("rootfs/etc/os-release") == b"ID=test\n"
        assert read("rootfs/var/cache/new") == b"fresh"
        assert tar.getmember("rootfs/bin/alias").issym()
        assert tar.getmember("rootfs/bin/tool2").islnk()
        assert tar.getmember("rootfs/home/app/hello.txt").uid == 1000
    assert "rootfs/etc/obsolete" not in names and "rootfs/var/cache/old" not in names


def test_skopeo_reads_the_archive(pushed: Pushed, tmp_path: Path) -> None:
    client = _client()
    saved = client.save(client.resolve(pushed.ref), tmp_path, basename="img", rootfs=False)
    assert saved.rootfs_tarball is None and not (tmp_path / "img.rootfs.tgz").exists()
    info = json.loads(skopeo("inspect", f"oci-archive:{saved.oci_archive}").stdout)
    assert info["Digest"] == pushed.amd64.digest
    assert info["Layers"] == pushed.amd64.layer_digests
    assert "LABEL" not in " ".join(info["Env"]) and "A=1" in info["Env"]


def test_save_is_deterministic(pushed: Pushed, tmp_path: Path) -> None:
    client = _client()
    resolved = client.resolve(pushed.ref)
    one = client.save(resolved, tmp_path / "one", basename="x")
    two = client.save(resolved, tmp_path / "two", basename="x")
    assert one.sha256 == two.sha256
    assert one.oci_archive.read_bytes() == two.oci_archive.read_bytes()


def test_docker_schema2_keeps_its_bytes(registry: RegistryServer, tmp_path: Path) -> None:
    image = unique_image()
    digest = skopeo_push(tmp_path, [image], f"{registry.host}/test/docker:v2s2", docker_format=True)
    client = _client()
    resolved = client.resolve(parse_image_ref(f"{registry.host}/test/docker:v2s2"))
    assert (resolved.digest, resolved.index_digest) == (digest, None)
    assert resolved.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    saved = client.save(resolved, tmp_path / "out", basename="d")
    assert json.loads(skopeo("inspect", f"oci-archive:{saved.oci_archive}").stdout)["Digest"] == digest
    target = parse_image_ref(f"{registry.host}/copy/docker:v2s2")
    assert client.push(saved.oci_archive, target) == digest
    assert hashlib.sha256(skopeo_inspect_raw(str(target))).hexdigest() == digest[7:]


def test_corrupted_blob_is_named_and_nothing_left(registry: RegistryServer, tmp_path: Path) -> None:
    image = unique_image()
    name = f"{registry.host}/test/corrupt"
    skopeo_push(tmp_path, [image], f"{name}:1")
    client = _client()
    resolved = client.resolve(parse_image_ref(f"{name}:1"))
    bad = image.layer_digests[1]
    out = tmp_path / "out"
    with registry.corrupted_blob(bad), pytest.raises(RegistryError) as caught:
        client.save(resolved, out, basename="c")
    assert f"blob {name}@{bad}" in str(caught.value)
    assert "do not match the digest" in str(caught.value)
    assert list(out.iterdir()) == []


def test_uncompressed_layer_refused_before_download(registry: RegistryServer, tmp_path: Path) -> None:
    layer = layer_tar([file("f", "x")])
    image = make_image([gzip_layer([file("g", "y")])])
    manifest = json.loads(image.manifest)
    manifest["layers"][0] = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
        "size": len(layer),
    }
    tar_image = TestImage(json.dumps(manifest).encode(), image.config, [layer], "amd64")
    push_raw(registry.host, "test/plain", "1", tar_image)
    client = _client()
    resolved = client.resolve(parse_image_ref(f"{registry.host}/test/plain:1"))
    with pytest.raises(RegistryError, match="uncompressed layers are not supported"):
        client.save(resolved, tmp_path / "out", basename="p")


# -- push and publish -----------------------------------------------------------------------------


def test_push_to_another_repository(pushed: Pushed, registry: RegistryServer, tmp_path: Path) -> None:
    client = _client()
    saved = client.save(client.resolve(pushed.ref), tmp_path, basename="m", rootfs=False)
    target = parse_image_ref(f"{registry.host}/copy/multi:1.0")
    assert client.push(saved.oci_archive, target) == pushed.amd64.digest
    assert skopeo_inspect_raw(str(target)) == pushed.amd64.manifest
    assert skopeo_inspect_raw(f"{target.name}@{pushed.amd64.digest}") == pushed.amd64.manifest
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}").stdout)
    assert info["Layers"] == pushed.amd64.layer_digests
    # again: every blob is already there, the result is the same
    assert client.push(saved.oci_archive, target) == pushed.amd64.digest
    with pytest.raises(RegistryError, match="not the sha256:"):
        client.push(saved.oci_archive, target.with_digest(pushed.arm64.digest))


def test_publish_images(pushed: Pushed, registry: RegistryServer, tmp_path: Path) -> None:
    client = _client()
    exploded = tmp_path / "exploded"
    client.save(client.resolve(pushed.ref), exploded / "images" / "a", basename="multi", rootfs=False)
    other = unique_image()
    skopeo_push(tmp_path, [other], f"{registry.host}/team/tool:x")
    by_digest = parse_image_ref(f"{registry.host}/team/tool@{other.digest}")
    client.save(client.resolve(by_digest), exploded / "images" / "b", basename="tool", rootfs=False)
    lines: list[str] = []
    result = publish_images(exploded, f"{registry.host}/airgap", client=client, log=lines.append)
    assert result == [
        (f"{registry.host}/airgap/test/multi:1@{pushed.amd64.digest}", pushed.amd64.digest),
        (f"{registry.host}/airgap/team/tool@{other.digest}", other.digest),
    ]
    assert skopeo_inspect_raw(f"{registry.host}/airgap/test/multi:1") == pushed.amd64.manifest
    assert skopeo_inspect_raw(f"{registry.host}/airgap/team/tool@{other.digest}") == other.manifest
    assert any("multi.oci.tar" in line for line in lines)


# -- auth and faults through the Bearer proxy --------------------------------------------------------


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[BearerProxy]:
    p = BearerProxy(registry.host, "puller", secrets.token_urlsafe(12)).start()
    try:
        yield p
    finally:
        p.stop()


def test_bearer_token_with_docker_config(pushed: Pushed, proxy: BearerProxy, tmp_path: Path) -> None:
    config = write_docker_config(tmp_path / "config.json", proxy.host, proxy.username, proxy.password)
    lines: list[str] = []
    client = RegistryClient(docker_config=config, log=lines.append)
    resolved = client.resolve(parse_image_ref(f"{proxy.host}/test/multi:1"))
    assert resolved.digest == pushed.amd64.digest
    saved = client.save(resolved, tmp_path / "out", basename="m")
    assert proxy.log.token_requests[0] == {
        "user": "puller",
        "service": ["test-registry"],
        "scope": ["repository:test/multi:pull"],
    }
    target = parse_image_ref(f"{proxy.host}/pushed/multi:1")
    assert client.push(saved.oci_archive, target) == pushed.amd64.digest
    assert any("repository:pushed/multi:pull,push" in t["scope"] for t in proxy.log.token_requests)
    everything = "\n".join(lines + proxy.log.lines)
    assert proxy.password not in everything
    assert not any(token in everything for token in proxy.tokens)


def test_bearer_access_token_field_and_plain_credentials(pushed: Pushed, proxy: BearerProxy, tmp_path: Path) -> None:
    proxy.access_token_field = True
    config = write_docker_config(tmp_path / "c.json", f"http://{proxy.host}/v2/", "puller", proxy.password, style="x")
    client = RegistryClient(docker_config=config)
    assert client.resolve(parse_image_ref(f"{proxy.host}/test/multi:1")).digest == pushed.amd64.digest


def test_bearer_without_or_with_wrong_credentials(proxy: BearerProxy, tmp_path: Path) -> None:
    ref = parse_image_ref(f"{proxy.host}/test/multi:1")
    with pytest.raises(RegistryError, match=rf"{proxy.host}: token request .* refused \(HTTP 401\), needs credentials"):
        RegistryClient(docker_config=tmp_path / "none.json").resolve(ref)
    wrong = write_docker_config(tmp_path / "wrong.json", proxy.host, "puller", "not-the-password")
    with pytest.raises(RegistryError, match="credentials refused") as caught:
        RegistryClient(docker_config=wrong).resolve(ref)
    assert "not-the-password" not in str(caught.value)
    helper = tmp_path / "helper.json"
    helper.write_text(json.dumps({"credHelpers": {proxy.host: "pass"}}))
    with pytest.raises(RegistryError, match="credential helpers are not supported"):
        RegistryClient(docker_config=helper).resolve(ref)


def test_resumes_a_dropped_blob_download(registry: RegistryServer, proxy: BearerProxy, tmp_path: Path) -> None:
    image = unique_image(big=300_000)
    skopeo_push(tmp_path, [image], f"{registry.host}/test/big:1")
    config = write_docker_config(tmp_path / "config.json", proxy.host, proxy.username, proxy.password)
    client = RegistryClient(docker_config=config)
    client.backoff = 0.01
    resolved = client.resolve(parse_image_ref(f"{proxy.host}/test/big:1"))
    proxy.drop_blob_after(200_000)
    saved = client.save(resolved, tmp_path / "out", basename="big", rootfs=False)
    # Only the rest is asked for: the resume starts where the last whole 64 KiB read ended.
    (asked,) = proxy.log.ranges
    assert asked == f"bytes={3 * 65536}-"
    info = json.loads(skopeo("inspect", f"oci-archive:{saved.oci_archive}").stdout)
    assert info["Digest"] == image.digest


def test_basic_challenge_uses_docker_config(pushed: Pushed, registry: RegistryServer, tmp_path: Path) -> None:
    proxy = BearerProxy(registry.host, "basic-user", secrets.token_urlsafe(12), basic=True).start()
    try:
        ref = parse_image_ref(f"{proxy.host}/test/multi:1")
        with pytest.raises(RegistryError, match=rf"{proxy.host} asks for Basic credentials: .* has no login for it"):
            RegistryClient(docker_config=tmp_path / "none.json").resolve(ref)
        config = write_docker_config(tmp_path / "c.json", proxy.host, proxy.username, proxy.password)
        client = RegistryClient(docker_config=config)
        assert client.resolve(ref).digest == pushed.amd64.digest
    finally:
        proxy.stop()


def test_push_starts_a_failed_upload_again(pushed: Pushed, proxy: BearerProxy, tmp_path: Path) -> None:
    config = write_docker_config(tmp_path / "config.json", proxy.host, proxy.username, proxy.password)
    lines: list[str] = []
    client = RegistryClient(docker_config=config, log=lines.append)
    client.backoff = 0.01
    saved = client.save(client.resolve(pushed.ref), tmp_path, basename="m", rootfs=False)
    proxy.fail_next("PUT", "/v2/retry/multi/blobs/uploads/", 500)
    assert client.push(saved.oci_archive, parse_image_ref(f"{proxy.host}/retry/multi:1")) == pushed.amd64.digest
    assert any("HTTP 500, starting the upload again" in line for line in lines)
    posts = [line for line in proxy.log.lines if line.startswith('"POST /v2/retry/multi/blobs/uploads/')]
    assert len(posts) == 1 + 1 + len(pushed.amd64.layers)  # config + layers, one of them twice


def test_push_refuses_a_tampered_archive(pushed: Pushed, registry: RegistryServer, tmp_path: Path) -> None:
    client = _client()
    saved = client.save(client.resolve(pushed.ref), tmp_path, basename="m", rootfs=False)
    layer = pushed.amd64.layer_digests[0]
    with tarfile.open(saved.oci_archive) as tar:
        offset = tar.getmember(f"blobs/sha256/{layer[7:]}").offset_data
    with saved.oci_archive.open("r+b") as f:
        f.seek(offset + 20)
        byte = f.read(1)
        f.seek(offset + 20)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(RegistryError, match=rf"m.oci.tar: blob {layer} does not match its digest"):
        client.push(saved.oci_archive, parse_image_ref(f"{registry.host}/tampered/multi:1"))


def test_https_first_even_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback registry with TLS is spoken to over TLS, trusting REQUESTS_CA_BUNDLE; plain HTTP is
    only the fallback when HTTPS does not answer."""
    ca, cert, key = make_ca(tmp_path / "ca")
    server = RegistryServer(tmp_path / "tls-registry", tls=(cert, key), ca=ca)
    server.start()
    try:
        image = unique_image()
        skopeo_push(tmp_path, [image], f"{server.host}/secure/img:1")
        ref = parse_image_ref(f"{server.host}/secure/img:1")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        client = _client()
        assert client.resolve(ref).digest == image.digest
        assert client._base(server.host) == f"https://{server.host}"
        saved = client.save(client.resolve(ref), tmp_path / "out", basename="s", rootfs=False)
        assert client.push(saved.oci_archive, parse_image_ref(f"{server.host}/secure/copy:1")) == image.digest
        # Without the CA the TLS handshake fails; the fallback to HTTP then meets a TLS server: refused.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        with pytest.raises(RegistryError, match=f"manifest {server.host}/secure/img:1"):
            _client().resolve(ref)
    finally:
        server.stop()


def test_publish_finds_archives_by_content(pushed: Pushed, registry: RegistryServer, tmp_path: Path) -> None:
    client = _client()
    saved = client.save(client.resolve(pushed.ref), tmp_path / "work", basename="m", rootfs=False)
    exploded = tmp_path / "exploded" / "image-x"
    exploded.mkdir(parents=True)
    saved.oci_archive.rename(exploded / "image.tar")
    (exploded / "other.tar").write_bytes(b"\0" * 1024)  # an unrelated tar is left alone
    result = publish_images(tmp_path / "exploded", f"{registry.host}/bycontent", client=client, log=lambda _: None)
    assert result == [(f"{registry.host}/bycontent/test/multi:1@{pushed.amd64.digest}", pushed.amd64.digest)]
