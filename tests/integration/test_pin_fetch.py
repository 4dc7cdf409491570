"""Making a pipeline offline, end to end, on real parts: pin -> fetch -> put -> get -> publish -> follow.

Upstream: a real registry (Debian's docker-registry on loopback) holding test images (a multi-arch
index among them), a real git repository (file://) holding the pipeline's task files, and an HTTPS
server with a private CA answering the GitHub REST API and serving release assets. Air-gapped side:
real SeaweedFS. The fixture pipeline (tests/data/pin/install-pcf.yml) is written in the style of
the original install pipelines.

The central check follows every resource, resource type and task image of the rewritten pipeline
to its object in the air-gapped store and finds there the bytes of the locked digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_bundle.offline.lock import load_lock
from offline_bundle.offline.vars import Vars
from tests.support.cli import run_cli
from tests.support.gitrepo import GitRepo
from tests.support.gpgkeys import GpgKeys
from tests.support.https_server import HttpsFileServer
from tests.support.needs import require
from tests.support.registry import (
    REGISTRY_BIN,
    SKOPEO,
    RegistryServer,
    file,
    gzip_layer,
    make_image,
    skopeo_inspect_raw,
    skopeo_push,
    whiteout,
)
from tests.support.schema import load_schema, schema_errors
from tests.support.seaweed import SeaweedServer, new_bucket_name
from tests.support.sides import Sides


@pytest.fixture(autouse=True)
def _real_registry_and_skopeo() -> None:
    require(
        REGISTRY_BIN.exists() and shutil.which(SKOPEO) is not None,
        "docker-registry or skopeo is not installed",
        fix="make install runs scripts/install-system-deps.sh",
    )


DATA = Path(__file__).resolve().parent.parent / "data" / "pin"
PIPELINE = DATA / "install-pcf.yml"
OM_AMD64 = b"#!/bin/sh\necho om 7.9.0 amd64\n" * 100
OM_ARM64 = b"#!/bin/sh\necho om 7.9.0 arm64\n" * 90
GITHUB_TOKEN = "gh-test-token-0123456789"
PINNED_PART = "pinned-pipelines=pinned=offline/pipelines/"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Upstream:
    registry: RegistryServer
    https: HttpsFileServer
    repo: GitRepo
    images: dict[str, str]  # "repo:tag" -> digest pushed (the index digest for the multi-arch one)
    amd64_multiarch: str
    work: Path

    def image(self, name: str, marker: str, *, arch: str = "amd64") -> Any:
        layers = [
            gzip_layer([file(f"etc/{name}-release", f"{name} {marker} {arch}\n"), file("bin/tool", b"#!/bin/sh\n")]),
            gzip_layer([whiteout("bin/tool"), file("opt/marker", marker)]),
        ]
        return make_image(layers, env=(f"IMAGE={name}", "PATH=/bin"), user="1000", architecture=arch)

    def push(self, repo_tag: str, marker: str) -> str:
        name = repo_tag.split(":")[0].rsplit("/", 1)[-1]
        digest = skopeo_push(self.work, [self.image(name, marker)], f"{self.registry.host}/{repo_tag}")
        self.images[repo_tag] = digest
        return digest


def git_repo_from(folder: Path, path: Path) -> GitRepo:
    path.mkdir(parents=True)
    repo = GitRepo(path)
    repo.git("init", "--quiet", "-b", "main")
    files = {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}
    files["terraform/main.tf"] = "# terraform\n"
    repo.commit("pipelines", files)
    return repo


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("upstream")
    registry = RegistryServer(work / "registry")
    registry.start()
    https = HttpsFileServer(work / "pki").start()
    try:
        repo = git_repo_from(DATA / "repo", work / "git" / "pcf-pipelines")
        up = Upstream(registry, https, repo, {}, "", work)
        for repo_tag in ("test/terraform-resource:1.0", "test/pivnet-resource:latest-final", "test/tool:latest"):
            up.push(repo_tag, "v1")
        up.push("test/czero:v1", "czero")
        amd64, arm64 = up.image("multiarch", "m", arch="amd64"), up.image("multiarch", "m", arch="arm64")
        up.images["test/multiarch:1.0"] = skopeo_push(work, [amd64, arm64], f"{registry.host}/test/multiarch:1.0")
        up.amd64_multiarch = amd64.digest
        # GitHub: one release of pivotal-cf/om with three assets (one without a digest), token required.
        https.add("/dl/om-linux-amd64-7.9.0", OM_AMD64)
        https.add("/dl/om-linux-arm64-7.9.0", OM_ARM64)
        https.add("/dl/om-darwin-7.9.0", b"darwin")
        assets = [
            {
                "name": "om-linux-amd64-7.9.0",
                "size": len(OM_AMD64),
                "browser_download_url": https.url("/dl/om-linux-amd64-7.9.0"),
                "digest": "sha256:" + sha(OM_AMD64),
            },
            {
                "name": "om-linux-arm64-7.9.0",
                "size": len(OM_ARM64),
                "browser_download_url": https.url("/dl/om-linux-arm64-7.9.0"),
            },
            {"name": "om-darwin-7.9.0", "size": 6, "browser_download_url": https.url("/dl/om-darwin-7.9.0")},
        ]
        release = {
            "id": 1,
            "tag_name": "7.9.0",
            "draft": False,
            "prerelease": False,
            "created_at": "2025-01-01T00:00:00Z",
            "assets": assets,
        }
        https.add("/api/repos/pivotal-cf/om/releases", json.dumps([release]).encode(), content_type="application/json")
        yield up
    finally:
        https.stop()
        registry.stop()


def params(up: Upstream, tmp: Path) -> Path:
    doc = {
        "registry": up.registry.host,
        "pipelines_git_uri": up.repo.uri,
        "pipelines_git_branch": "main",
        "github_api_url": up.https.url("/api/"),
        "github_token": GITHUB_TOKEN,
        "terraform_statefile_bucket": "state",
        "iaas": "vsphere",
    }
    path = tmp / "params.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def cli(*args: Any, tmp: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run_cli(*args, env={"TMPDIR": str(tmp)})
    if ok:
        assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def pin(up: Upstream, tmp: Path, out: str = "pinned", *extra: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    cli(
        "pin",
        PIPELINE,
        "--vars",
        params(up, tmp),
        "--out",
        tmp / out,
        "--keep",
        "terraform-state",
        "--ca-bundle",
        up.https.ca_pem,
        *extra,
        tmp=tmp,
    )
    return tmp / out


def fetch(
    up: Upstream, pinned: Path, out: Path, vars_file: Path, *extra: Any, tmp: Path, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    lock = pinned / "offline.lock.yml"
    args = ("--vars", vars_file, "--ca-bundle", up.https.ca_pem, *extra)
    return cli("fetch", lock, "--out", out, *args, tmp=tmp, ok=ok)


@pytest.fixture(scope="module")
def carried(
    upstream: Upstream, seaweed: SeaweedServer, gpg_keys: GpgKeys, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """pin -> fetch -> put (parts from parts.json, as the pipeline's load_var does) -> get -> publish."""
    tmp = tmp_path_factory.mktemp("carried")
    pinned = pin(upstream, tmp)
    build = tmp / "build"
    build.mkdir()
    shutil.copytree(pinned, build / "pinned")
    creds = tmp / "creds.yml"
    creds.write_text(yaml.safe_dump({"github_token": GITHUB_TOKEN}))
    fetched = fetch(
        upstream,
        build / "pinned",
        build / "fetched",
        creds,
        "--also-part",
        "pinned-pipelines=pinned=offline/pipelines/",
        tmp=tmp,
    )
    parts = json.loads((build / "fetched" / "parts.json").read_text())
    assert GITHUB_TOKEN not in fetched.stdout + fetched.stderr

    seaweed.ensure_running()
    bundle_bucket, products_bucket = new_bucket_name(), new_bucket_name()
    for b in (bundle_bucket, products_bucket):
        seaweed.client().create_bucket(Bucket=b)
    sides = Sides.create(seaweed, bundle_bucket, gpg_keys, tmp)
    sides.put(build, {"parts": parts, "version": "1.0.0"})
    exploded = tmp / "exploded"
    sides.get("1.0.0", exploded)
    access, secret = seaweed.credentials(writer=True)
    target = tmp / "target.yml"
    target.write_text(
        yaml.safe_dump(
            {
                "bucket": products_bucket,
                "endpoint": seaweed.endpoint,
                "region_name": "us-east-1",
                "access_key_id": access,
                "secret_access_key": secret,
            }
        )
    )
    cli("publish", "--config", target, exploded, tmp=tmp)
    return {
        "tmp": tmp,
        "build": build,
        "fetch": fetched,
        "parts": parts,
        "products": products_bucket,
        "exploded": exploded,
        "lock": load_lock(build / "pinned" / "offline.lock.yml"),
        "fetched": json.loads((build / "fetched" / "fetched.json").read_text()),
        "seaweed": seaweed,
    }


def _all_steps(plan: Any) -> Iterator[dict[str, Any]]:
    for s in plan if isinstance(plan, list) else [plan]:
        if isinstance(s, dict):
            yield s
            for k in ("do", "in_parallel", "try", "on_failure", "on_success", "ensure"):
                if k in s:
                    yield from _all_steps(s[k])


def s3_resources(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(where, s3 source, version) for every s3 resource, resource type and task image_resource."""
    gets: dict[str, list[dict[str, Any]]] = {}
    steps = [s for j in doc["jobs"] for s in _all_steps(j["plan"])]
    for s in steps:
        if "get" in s:
            gets.setdefault(s.get("resource") or s["get"], []).append(s)
    for r in doc["resources"]:
        if r["type"] == "s3":
            versions = [g.get("version") for g in gets.get(r["name"], [])]
            assert versions, f"resource {r['name']} is never fetched"
            assert all(v == versions[0] for v in versions)
            yield f"resources.{r['name']}", r["source"], versions[0]
    for t in doc.get("resource_types") or []:
        if t["type"] == "s3":
            yield f"resource_types.{t['name']}", t["source"], None
    for s in steps:
        ir = (s.get("config") or {}).get("image_resource") if "task" in s else None
        if ir and ir["type"] == "s3":
            yield f"task {s['task']}", ir["source"], ir.get("version")


def read_object(seaweed: SeaweedServer, bucket: str, key: str) -> bytes:
    return seaweed.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def oci_manifest_digest(archive: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    (descriptor,) = index["manifests"]
    return descriptor["digest"]


def test_every_reference_of_the_rewritten_pipeline_finds_its_locked_bytes_in_the_air_gapped_store(
    carried: dict[str, Any], upstream: Upstream
) -> None:
    seaweed, bucket, lock = carried["seaweed"], carried["products"], carried["lock"]
    # The rewritten pipeline travelled in the bundle too, and was published with the artifacts.
    doc = yaml.safe_load(read_object(seaweed, bucket, "offline/pipelines/install-pcf.yml"))
    vars_ = Vars({"offline_s3_bucket": bucket})
    listing = [
        o["Key"]
        for page in seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    by_key = {k: e for e in lock.entries.values() for k in e.keys.values()}
    followed = set()
    for where, source, version in s3_resources(doc):
        regexp = vars_.resolve(source["regexp"])
        assert vars_.resolve(source["bucket"]) == bucket
        matches = [k for k in listing if re.fullmatch(regexp, k)]
        assert len(matches) == 1, (where, regexp, matches)
        key = matches[0]
        if version is not None:
            assert version == {"path": key}, where
        entry = by_key[key]
        data = read_object(seaweed, bucket, key)
        name = key.rsplit("/", 1)[1]
        # The bytes are those fetch verified and recorded.
        assert sha(data) == carried["fetched"][entry.id]["files"][name]["sha256"], where
        if entry.kind == "image":
            digest = entry.fields["digest"]
            repo_tag = entry.fields["repository"].split("/", 1)[1] + ":" + entry.fields["tag"]
            if name == "image.tar":
                assert oci_manifest_digest(data) == digest
            else:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    names = set(tar.getnames())
                    meta = json.load(tar.extractfile("metadata.json"))  # type: ignore[arg-type]
                assert "rootfs/opt/marker" in names and "rootfs/bin/tool" not in names  # whiteout applied
                assert meta["user"] == "1000" and f"IMAGE={repo_tag.split(':')[0].rsplit('/', 1)[1]}" in meta["env"]
            want = upstream.amd64_multiarch if "multiarch" in repo_tag else upstream.images[repo_tag]
            assert digest == want, where
            # the OCI archive beside it names the same digest
            assert oci_manifest_digest(read_object(seaweed, bucket, entry.keys["oci"])) == digest
        elif entry.kind == "git":
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                task = tar.extractfile("tasks/create-infrastructure/task.yml").read()  # type: ignore[union-attr]
            assert task == (DATA / "repo" / "tasks" / "create-infrastructure" / "task.yml").read_bytes()
            assert entry.fields["commit"] == upstream.repo.commits["pipelines"]
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
            assert got == {"om-linux-amd64-7.9.0": OM_AMD64, "om-linux-arm64-7.9.0": OM_ARM64}
        followed.add(entry.id)
    # Every locked artifact is used by some reference, and every reference was followed.
    assert followed == set(lock.entries), set(lock.entries) - followed
    kinds = sorted(e.kind for e in lock.entries.values())
    assert kinds == ["file", "git", "image", "image", "image", "image"]

    # Nothing of the rewritten pipeline reaches upstream.
    text = yaml.safe_dump(doc)
    for address in (upstream.registry.host, upstream.https.base, upstream.repo.uri):
        assert address not in text


def test_the_rewritten_pipeline_passes_lint_and_the_schema(carried: dict[str, Any]) -> None:
    path = carried["build"] / "pinned" / "install-pcf.yml"
    proc = cli("lint-pipeline", path, tmp=carried["tmp"])
    assert proc.stdout.startswith(f"{path}: OK"), proc.stdout + proc.stderr
    schema = load_schema()
    assert schema_errors(schema, yaml.safe_load(path.read_text())) == []


def test_fetch_writes_parts_ready_for_the_put_and_resumes(carried: dict[str, Any], upstream: Upstream) -> None:
    lock, parts = carried["lock"], carried["parts"]
    assert sorted(p["name"] for p in parts) == sorted([e.part for e in lock.entries.values()] + ["pinned-pipelines"])
    for p in parts:
        if p["name"] != "pinned-pipelines":
            assert p["path"] == f"fetched/{p['name']}"
    assert f"fetched {len(lock.entries)} artifact(s), 0 already there" in carried["fetch"].stdout
    # A second run finds everything in place and downloads nothing.
    build = carried["build"]
    again = fetch(
        upstream,
        build / "pinned",
        build / "fetched",
        carried["tmp"] / "creds.yml",
        "--also-part",
        PINNED_PART,
        tmp=carried["tmp"],
    )
    assert json.loads((build / "fetched" / "parts.json").read_text()) == parts
    assert f"fetched 0 artifact(s), {len(lock.entries)} already there" in again.stdout
    # No token anywhere in what was written.
    for root, _, files in os.walk(carried["build"]):
        for f in files:
            assert GITHUB_TOKEN.encode() not in Path(root, f).read_bytes(), f


def test_pin_again_is_identical_and_a_moved_tag_changes_exactly_one_entry(upstream: Upstream, tmp_path: Path) -> None:
    first = pin(upstream, tmp_path / "a")
    second = pin(upstream, tmp_path / "b")
    assert (first / "offline.lock.yml").read_bytes() == (second / "offline.lock.yml").read_bytes()
    assert (first / "install-pcf.yml").read_bytes() == (second / "install-pcf.yml").read_bytes()

    old = upstream.images["test/tool:latest"]
    new = upstream.push("test/tool:latest", "v2")
    try:
        moved = pin(upstream, tmp_path / "c")
    finally:
        upstream.push("test/tool:latest", "v1")  # the module's other tests expect the first image
    before = {e["id"]: e for e in yaml.safe_load((first / "offline.lock.yml").read_text())["artifacts"]}
    after = {e["id"]: e for e in yaml.safe_load((moved / "offline.lock.yml").read_text())["artifacts"]}
    assert set(before) - set(after) == {f"image:{upstream.registry.host}/test/tool@{old}"}
    assert set(after) - set(before) == {f"image:{upstream.registry.host}/test/tool@{new}"}
    assert all(before[i] == after[i] for i in set(before) & set(after))


def test_a_registry_blob_that_does_not_match_its_digest_fails_fetch_naming_it(
    upstream: Upstream, tmp_path: Path
) -> None:
    pinned = pin(upstream, tmp_path)
    czero = upstream.image("czero", "czero")
    layer = czero.layer_digests[0]
    with upstream.registry.corrupted_blob(layer):
        proc = fetch(upstream, pinned, tmp_path / "fetched", params(upstream, tmp_path), tmp=tmp_path, ok=False)
    assert proc.returncode != 0
    assert layer in proc.stderr and "test/czero" in proc.stderr, proc.stderr
    assert not any((tmp_path / "fetched").glob("image-*czero*")), "a part of the bad image was left"


def test_the_registry_form_publishes_images_by_digest_into_an_internal_registry(
    upstream: Upstream, tmp_path: Path
) -> None:
    internal = RegistryServer(tmp_path / "internal")
    internal.start()
    try:
        pinned = pin(upstream, tmp_path, "pinned", "--registry", f"{internal.host}/mirror")
        fetch(upstream, pinned, tmp_path / "fetched", params(upstream, tmp_path), tmp=tmp_path)
        lock = load_lock(pinned / "offline.lock.yml")
        images = [e for e in lock.entries.values() if e.kind == "image"]
        assert not list((tmp_path / "fetched").rglob("rootfs.tgz"))  # no S3 form needed
        proc = cli("publish-images", tmp_path / "fetched", "--registry", f"{internal.host}/mirror", tmp=tmp_path)
        assert f"published {len(images)} image(s)" in proc.stdout
        # Every image reference of the rewritten pipeline names the internal registry, and what it
        # names (a digest, or for resource types the tag) is there with the locked digest.
        doc = yaml.safe_load((pinned / "install-pcf.yml").read_text())
        locked = {f"{internal.host}/mirror/" + e.fields["repository"].split("/", 1)[1]: e for e in images}
        refs = [(r["source"], None) for r in doc["resource_types"]]
        refs += [(r["source"], None) for r in doc["resources"] if r["type"] == "registry-image"]
        refs += [
            (s["config"]["image_resource"]["source"], s["config"]["image_resource"]["version"])
            for j in doc["jobs"]
            for s in _all_steps(j["plan"])
            if "task" in s and "config" in s
        ]
        assert len(refs) >= 4
        for source, version in refs:
            entry = locked[source["repository"]]
            if version is not None:
                assert version == {"digest": entry.fields["digest"]}
            raw = skopeo_inspect_raw(f"{source['repository']}@{entry.fields['digest']}")
            assert "sha256:" + sha(raw) == entry.fields["digest"]
            by_tag = skopeo_inspect_raw(f"{source['repository']}:{source['tag']}")
            assert "sha256:" + sha(by_tag) in (entry.fields["digest"], entry.fields["index_digest"])
    finally:
        internal.stop()


def test_the_create_pipelines_job_runs_pin_and_fetch_and_puts_the_parts_it_lists(
    upstream: Upstream, seaweed: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    from tests.integration.test_pipelines_e2e import CREATE, load_pipeline, resource, run_task, step
    from tests.support.concourse import parse_stdout, run_asset

    seaweed.ensure_running()
    bucket = new_bucket_name()
    seaweed.client().create_bucket(Bucket=bucket)
    access, secret = seaweed.credentials(writer=True)
    up_vars = yaml.safe_load(params(upstream, tmp_path).read_text())
    create = load_pipeline(
        CREATE,
        {
            "connected_s3_bucket": bucket,
            "connected_s3_endpoint": seaweed.endpoint,
            "connected_s3_region": "us-east-1",
            "connected_s3_access_key_id": access,
            "connected_s3_secret_access_key": secret,
            "airgap_decryption_public_key": gpg_keys.recipient.public_armored,
            "bundle_signing_private_key": gpg_keys.signer.secret_armored,
            "pin_pipelines": "airgapped/install-pcf.yml",
            "pin_vars": yaml.safe_dump({k: v for k, v in up_vars.items() if k != "github_token"}),
            "pin_keep": "terraform-state",
            "fetch_credentials": yaml.safe_dump({"github_token": GITHUB_TOKEN}),
            "airgap_s3_products_prefix": "products/",
        },
    )
    work = tmp_path / "build"
    (work / "pipelines" / "airgapped").mkdir(parents=True)
    shutil.copy(PIPELINE, work / "pipelines" / "airgapped" / "install-pcf.yml")
    for name in ("pin", "fetch"):
        config = step(create, "bundle-pinned-pipelines", "task", name)["config"]
        # The worker's trust store holds the private CA of the test's HTTPS server.
        config = {**config, "params": {**config["params"], "REQUESTS_CA_BUNDLE": str(upstream.https.ca_pem)}}
        for out in config.get("outputs", []):
            (work / out["name"]).mkdir(exist_ok=True)
        proc = run_task(config, work)
        assert proc.returncode == 0, f"task {name}:\n{proc.stdout}\n{proc.stderr}"
    assert GITHUB_TOKEN not in proc.stdout + proc.stderr
    assert not any(p.name.startswith("tmp") for p in work.iterdir())  # the vars files stayed out of the outputs

    # --target-prefix: the rewritten pipeline reads below the products prefix.
    rewritten = yaml.safe_load((work / "pinned" / "install-pcf.yml").read_text())
    assert all(
        g["version"]["path"].startswith("products/offline/")
        for j in rewritten["jobs"]
        for g in _all_steps(j["plan"])
        if "get" in g and "version" in g
    )

    # load_var + the put, as Concourse would run them.
    load = step(create, "bundle-pinned-pipelines", "load_var", "fetched-parts")
    parts = json.loads((work / load["file"]).read_text())
    lock_hash = sha((work / "pinned" / "offline.lock.yml").read_bytes())[:12]
    assert {"name": "pinned-pipelines", "path": "pinned", "destination": f"offline/pipelines/{lock_hash}/"} in parts
    put = step(create, "bundle-pinned-pipelines", "put", "pinned-bundle")
    assert put["params"]["parts"] == "((.:fetched-parts))"
    (work / "pinned-bundle-version").mkdir()
    (work / "pinned-bundle-version" / "version").write_text("2.0.0")
    request = {"source": resource(create, "pinned-bundle")["source"], "params": {**put["params"], "parts": parts}}
    answer = parse_stdout(run_asset("out", request, work))
    assert answer["version"] == {"version": "2.0.0"}
    name = resource(create, "pinned-bundle")["source"]["name"]
    signed = read_object(seaweed, bucket, f"{name}/2.0.0/manifest.json.asc").decode()
    manifest = json.loads(signed.split("\n\n", 1)[1].split("\n-----BEGIN PGP SIGNATURE", 1)[0].replace("\n- ", "\n"))
    assert sorted(p["name"] for p in manifest["parts"]) == sorted(p["name"] for p in parts)


def test_pack_takes_fetchs_parts_file_and_the_medium_verifies(carried: dict[str, Any], gpg_keys: GpgKeys) -> None:
    tmp, build = carried["tmp"], carried["build"]
    config = tmp / "pack.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "pinned",
                "recipient_public_keys": [gpg_keys.recipient.public_armored],
                "signing_private_key": gpg_keys.signer.secret_armored,
                "trusted_public_keys": [gpg_keys.signer.public_armored],
                "decryption_private_key": gpg_keys.recipient.secret_armored,
            }
        )
    )
    medium = tmp / "medium"
    parts = build / "fetched" / "parts.json"
    packed = cli(
        "pack",
        "--config",
        config,
        "--to-dir",
        medium,
        "--base",
        build,
        "--parts-file",
        parts,
        "--version",
        "1.0.0",
        tmp=tmp,
    )
    assert f"{len(carried['parts'])} part(s)" in packed.stdout, packed.stdout
    verified = cli("verify", "--config", config, "--from-dir", medium, tmp=tmp)
    assert verified.stdout.startswith("OK pinned 1.0.0"), verified.stdout
    bad = tmp / "bad-parts.json"
    bad.write_text('{"name": "x"}')
    refused = cli("pack", "--config", config, "--to-dir", medium, "--parts-file", bad, tmp=tmp, ok=False)
    assert refused.returncode == 1 and "must hold a list of parts" in refused.stderr
