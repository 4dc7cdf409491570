"""offline/oci without a registry: references, challenges, Docker config, layer merging, archive determinism."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from offline_bundle.errors import ConfigError
from offline_bundle.offline.oci.auth import is_loopback, load_docker_credentials, parse_challenges
from offline_bundle.offline.oci.layout import read_oci_archive_manifest, write_oci_archive
from offline_bundle.offline.oci.reference import (
    DOCKER_HUB,
    INDEX_DIGEST_ANNOTATION,
    REF_NAME,
    ImageRef,
    RegistryError,
    parse_image_ref,
    split_registry,
)
from offline_bundle.offline.oci.registry import RegistryClient
from offline_bundle.offline.oci.rootfs import plan_rootfs, write_rootfs_tarball
from tests.support.registry import (
    Entry,
    file,
    folder,
    gzip_layer,
    hardlink,
    make_image,
    opaque,
    symlink,
    whiteout,
    write_docker_config,
)

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64

# -- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", DOCKER_HUB, "library/busybox", "latest", None),
        ("busybox:1.36", DOCKER_HUB, "library/busybox", "1.36", None),
        ("docker.io/library/busybox:1.36", DOCKER_HUB, "library/busybox", "1.36", None),
        (
            "index.docker.io/concourse/registry-image-resource",
            DOCKER_HUB,
            "concourse/registry-image-resource",
            "latest",
            None,
        ),
        ("concourse/git-resource:1.2", DOCKER_HUB, "concourse/git-resource", "1.2", None),
        (f"127.0.0.1:5000/a/b@{D1}", "127.0.0.1:5000", "a/b", None, D1),
        (f"ghcr.io/org/img:v1.2_3@{D1}", "ghcr.io", "org/img", "v1.2_3", D1),
        ("localhost/x", "localhost", "x", "latest", None),
        ("localhost:5000/x/y-z__w.v:tag", "localhost:5000", "x/y-z__w.v", "tag", None),
        ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
        ("registry.example.com:443/deep/path/to/img", "registry.example.com:443", "deep/path/to/img", "latest", None),
    ],
)
def test_parse_image_ref(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    assert parse_image_ref(text) == ImageRef(registry, repository, tag, digest)


def test_str_is_canonical_and_parses_back() -> None:
    ref = parse_image_ref(f"busybox:1.36@{D1}")
    assert str(ref) == f"registry-1.docker.io/library/busybox:1.36@{D1}"
    assert parse_image_ref(str(ref)) == ref
    assert ref.name == "registry-1.docker.io/library/busybox"
    assert str(parse_image_ref("127.0.0.1:5000/a")) == "127.0.0.1:5000/a:latest"


def test_with_digest() -> None:
    ref = parse_image_ref("ghcr.io/o/i:1").with_digest(D2)
    assert (ref.tag, ref.digest) == ("1", D2)
    with pytest.raises(ConfigError, match="not a sha256 digest"):
        ref.with_digest("sha256:abc")


def test_concourse_source_repository_and_tag() -> None:
    assert parse_image_ref("concourse/oci-build-task", tag="0.11") == ImageRef(
        DOCKER_HUB, "concourse/oci-build-task", "0.11", None
    )
    assert parse_image_ref("ghcr.io/o/i:1", tag="1").tag == "1"
    assert parse_image_ref(f"ghcr.io/o/i@{D1}", tag="1") == ImageRef("ghcr.io", "o/i", "1", D1)
    with pytest.raises(ConfigError, match="contradicts"):
        parse_image_ref("ghcr.io/o/i:1", tag="2")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Busybox",
        "busybox:",
        "busybox@sha256:abc",
        f"busybox@sha512:{'a' * 128}",
        "a//b",
        "ghcr.io/",
        "-x/y",
        "host:notaport/x",
        "x:" + "t" * 200,
        "a/" * 130 + "b",
    ],
)
def test_parse_image_ref_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_image_ref(text)


def test_split_registry() -> None:
    assert split_registry("127.0.0.1:5000") == ("127.0.0.1:5000", "")
    assert split_registry("registry.internal/mirror/docker/") == ("registry.internal", "mirror/docker")
    for bad in ("mirror/prefix", "", "registry.internal/Bad"):
        with pytest.raises(ConfigError):
            split_registry(bad)


# -- auth -------------------------------------------------------------------------------------


def test_parse_bearer_challenge() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'
    assert parse_challenges(header) == [
        (
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull",
            },
        )
    ]


def test_parse_several_challenges_and_escapes() -> None:
    header = 'Basic realm="Registry Realm", Bearer realm="https://t/a\\"b", Scope="repository:a/b:pull,push",error=x'
    assert parse_challenges(header) == [
        ("basic", {"realm": "Registry Realm"}),
        ("bearer", {"realm": 'https://t/a"b', "scope": "repository:a/b:pull,push", "error": "x"}),
    ]
    assert parse_challenges("") == []


def test_docker_config_credentials(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldDE="},  # hub:secret1
                    "ghcr.io": {"username": "gh", "password": "p:w"},
                    "http://127.0.0.1:5000/v2/": {"auth": "bG9jYWw6cGFzcw=="},  # local:pass
                    "token.only.example": {"identitytoken": "xyz"},
                },
                "credHelpers": {"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"},
            }
        )
    )
    creds, unusable = load_docker_credentials(path)
    assert (creds[DOCKER_HUB].username, creds[DOCKER_HUB].password) == ("hub", "secret1")
    assert (creds["ghcr.io"].username, creds["ghcr.io"].password) == ("gh", "p:w")
    assert creds["127.0.0.1:5000"].username == "local"
    assert "identity token" in unusable["token.only.example"]
    assert "credential helpers are not supported" in unusable["123.dkr.ecr.us-east-1.amazonaws.com"]
    assert load_docker_credentials(tmp_path / "missing.json") == ({}, {})
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="config.json"):
        load_docker_credentials(path)


def test_credentials_never_in_repr(tmp_path: Path) -> None:
    path = write_docker_config(tmp_path / "c.json", "r.example", "u", "hunter2-secret")
    creds, _ = load_docker_credentials(path)
    client = RegistryClient(docker_config=path)
    assert "hunter2-secret" not in repr(client.__dict__.get("_creds"))
    assert creds["r.example"].password == "hunter2-secret"


def test_docker_config_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_docker_config(tmp_path / "dc" / "config.json", "r.example", "u", "p", style="plain")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    found, why = RegistryClient()._credentials("r.example")
    assert found is not None and found.username == "u"
    missing, why = RegistryClient()._credentials("other.example")
    assert missing is None and "has no login for it" in why


def test_plain_http_only_for_loopback_and_insecure() -> None:
    client = RegistryClient(insecure_registries=["mirror.lan:5000", "other.lan"])
    for allowed in ("127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000", "mirror.lan:5000", "other.lan:1"):
        assert client.plain_http_allowed(allowed), allowed
    for refused in ("mirror.lan:5001", "ghcr.io", "10.0.0.1:5000", "128.0.0.1", "localhost.example.com"):
        assert not client.plain_http_allowed(refused), refused
    assert client._base("ghcr.io") == "https://ghcr.io"  # decided without asking anyone
    assert is_loopback("127.0.0.1:1") and not is_loopback("128.0.0.1")


def test_platform_is_checked() -> None:
    with pytest.raises(ConfigError, match="os/arch"):
        RegistryClient(platform="amd64")
    assert RegistryClient(platform="linux/arm64/v8").platform == ("linux", "arm64", "v8")


def test_layer_kinds_refused_by_name() -> None:
    ref = parse_image_ref("127.0.0.1:1/x:1")
    base = {"config": {"digest": D1, "size": 1}}
    for kind, why in (
        ("application/vnd.oci.image.layer.v1.tar+zstd", "zstd"),
        ("application/vnd.oci.image.layer.v1.tar", "uncompressed"),
        ("application/vnd.docker.image.rootfs.diff.tar", "uncompressed"),
    ):
        manifest = {**base, "layers": [{"mediaType": kind, "digest": D2, "size": 3}]}
        with pytest.raises(RegistryError, match=f"layer {D2}.*{why}"):
            RegistryClient._check_manifest(ref, manifest)
    foreign = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 3, "urls": ["x"]}
    with pytest.raises(RegistryError, match="foreign"):
        RegistryClient._check_manifest(ref, {**base, "layers": [foreign]})


# -- rootfs -----------------------------------------------------------------------------------


def _layers(tmp_path: Path, *layers: list[Entry]) -> list[Path]:
    paths = []
    for i, entries in enumerate(layers):
        path = tmp_path / f"layer{i}"
        path.write_bytes(gzip_layer(entries))
        paths.append(path)
    return paths


def _rootfs(tmp_path: Path, *layers: list[Entry], metadata: dict | None = None) -> tuple[bytes, dict]:
    out = io.BytesIO()
    sha = write_rootfs_tarball(_layers(tmp_path, *layers), out, metadata or {"env": [], "user": ""})
    data = out.getvalue()
    assert sha == hashlib.sha256(data).hexdigest()
    members = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar:
            content = tar.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
            members[m.name] = (m, content)
    return data, members


def test_whiteouts_and_opaque_folders(tmp_path: Path) -> None:
    base = [
        folder("etc"),
        file("etc/keep", "k"),
        file("etc/gone", "g"),
        folder("var/cache"),
        file("var/cache/a", "a"),
        folder("var/cache/sub"),
        file("var/cache/sub/b", "b"),
        folder("tree"),
        file("tree/deep/leaf", "l"),
    ]
    top = [whiteout("etc/gone"), opaque("var/cache"), file("var/cache/new", "n"), whiteout("tree")]
    _, members = _rootfs(tmp_path, base, top)
    names = set(members)
    assert {"rootfs/etc/keep", "rootfs/var/cache/new"} <= names
    assert not names & {"rootfs/etc/gone", "rootfs/var/cache/a", "rootfs/var/cache/sub", "rootfs/var/cache/sub/b"}
    assert not [n for n in names if n.startswith("rootfs/tree")]
    assert not [n for n in names if ".wh." in n]


def test_whiteout_applies_only_below_and_can_be_recreated(tmp_path: Path) -> None:
    l0 = [file("a", "0"), file("d/x", "0")]
    l1 = [whiteout("a"), opaque("d"), file("d/y", "1")]
    l2 = [file("a", "2"), file("d/z", "2")]
    _, members = _rootfs(tmp_path, l0, l1, l2)
    assert members["rootfs/a"][1] == b"2"
    assert {n for n in members if n.startswith("rootfs/d/")} == {"rootfs/d/y", "rootfs/d/z"}


def test_higher_layer_wins_and_replaces_folder_by_link(tmp_path: Path) -> None:
    l0 = [file("bin/tool", "old", 0o755), folder("lib"), file("lib/libc.so", "c"), file("same", "first")]
    l1 = [file("bin/tool", "new", 0o700), symlink("lib", "usr/lib"), file("same", "dup1"), file("same", "dup2")]
    _, members = _rootfs(tmp_path, l0, l1)
    info, content = members["rootfs/bin/tool"]
    assert content == b"new" and info.mode == 0o700
    assert members["rootfs/lib"][0].issym() and members["rootfs/lib"][0].linkname == "usr/lib"
    assert "rootfs/lib/libc.so" not in members
    assert members["rootfs/same"][1] == b"dup2"  # the last member of a name in a layer wins


def test_folders_first_links_after_targets(tmp_path: Path) -> None:
    l0 = [file("usr/bin/python3.11", "py", 0o755)]
    l1 = [hardlink("usr/bin/python3", "usr/bin/python3.11"), file("usr/bin/python3.11", "py2", 0o755)]
    data, members = _rootfs(tmp_path, l0, l1)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        order = tar.getnames()
    assert order[:4] == ["metadata.json", "rootfs", "rootfs/usr", "rootfs/usr/bin"]
    assert order.index("rootfs/usr/bin/python3.11") < order.index("rootfs/usr/bin/python3")
    assert members["rootfs/usr/bin/python3"][0].linkname == "rootfs/usr/bin/python3.11"
    extracted = tmp_path / "x"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(extracted, filter="tar")
    assert (extracted / "rootfs/usr/bin/python3").read_bytes() == b"py2"


def test_metadata_json_and_owners(tmp_path: Path) -> None:
    _, members = _rootfs(
        tmp_path,
        [file("home/app/f", "x", uid=1000, gid=1000)],
        metadata={"env": ["PATH=/bin", "A=b c"], "user": "app"},
    )
    assert json.loads(members["metadata.json"][1]) == {"env": ["PATH=/bin", "A=b c"], "user": "app"}
    assert (members["rootfs/home/app/f"][0].uid, members["rootfs/home/app/f"][0].gid) == (1000, 1000)


def test_rootfs_is_deterministic(tmp_path: Path) -> None:
    layers = ([folder("a"), file("a/1", "x" * 5000), file("b", "y")], [whiteout("b"), file("c", "z")])
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first, _ = _rootfs(tmp_path / "1", *layers)
    second, _ = _rootfs(tmp_path / "2", *layers)
    assert first == second
    assert first[4:8] == b"\0\0\0\0"  # gzip MTIME 0
    assert gzip.decompress(first)  # and a valid gzip stream


def test_member_outside_root_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="outside the root"):
        _rootfs(tmp_path, [file("../../etc/passwd", "x")])


def test_plan_keeps_layer_and_member(tmp_path: Path) -> None:
    final, folders = plan_rootfs(_layers(tmp_path, [folder("d"), file("d/f", "1")], [folder("d", 0o700)]))
    assert final == {"d": (1, 0, True), "d/f": (0, 1, False)}
    assert folders["d"].mode == 0o700


def test_not_a_gzip_layer(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(RegistryError, match="not a gzip tar"):
        plan_rootfs([path])


# -- OCI archives ------------------------------------------------------------------------------


def _archive(tmp_path: Path, name: str) -> tuple[Path, str, dict]:
    image = make_image([gzip_layer([file("f", "1")])])
    blobs = tmp_path / f"blobs-{name}"
    blobs.mkdir()
    for digest, data in image.blobs.items():
        (blobs / digest[7:]).write_bytes(data)
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": image.digest,
        "size": len(image.manifest),
        "annotations": {REF_NAME: "1.0", INDEX_DIGEST_ANNOTATION: D1},
    }
    path = tmp_path / f"{name}.oci.tar"
    return path, write_oci_archive(path, descriptor, blobs), descriptor


def test_oci_archive_deterministic_and_readable(tmp_path: Path) -> None:
    a, sha_a, descriptor = _archive(tmp_path, "a")
    b, sha_b, _ = _archive(tmp_path, "b")
    assert a.read_bytes() == b.read_bytes() and sha_a == sha_b == hashlib.sha256(a.read_bytes()).hexdigest()
    with tarfile.open(a) as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert all(m.mtime == 0 and m.uid == m.gid == 0 for m in tar.getmembers())
        found, manifest = read_oci_archive_manifest(tar, a)
    assert found == descriptor and hashlib.sha256(manifest).hexdigest() == descriptor["digest"][7:]


def test_oci_archive_with_wrong_manifest_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.oci.tar"
    index = json.dumps({"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D1}]})
    with tarfile.open(path, "w") as tar:
        for name, data in (("index.json", index.encode()), (f"blobs/sha256/{'a' * 64}", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar, pytest.raises(RegistryError, match=f"manifest {D1} does not match"):
        read_oci_archive_manifest(tar, path)
