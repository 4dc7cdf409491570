"""Both pipelines, step by step, with the real scripts and two SeaweedFS stores (connected, air-gapped).

The pipeline files are read and interpolated with their example params (test endpoints and keys
swapped in), so the test runs what the YAML says: the create pipeline's put with its params and
only its ``inputs:`` mounted; the carry; the unpack pipeline's gets with their params and its publish
task's own script; then the layout the install pipelines' ``s3`` resources will read, with the same
regexps they would use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_bundle.lint import VAR_RE, lint_file, parse_var
from tests.support.cli import cli_env, ok, run_cli, write_yaml
from tests.support.concourse import parse_stdout, record_output, run_asset
from tests.support.gpgkeys import GpgKeys
from tests.support.paths import REPO_ROOT
from tests.support.seaweed import REGION, SeaweedServer, new_bucket_name

pytestmark = pytest.mark.integration

PIPELINES = REPO_ROOT / "pipelines"
CREATE = PIPELINES / "create-offline-pinned-pipelines.yml"
UNPACK = PIPELINES / "unpack-pcf-pipelines-combined.yml"
BIG = 10 * 1024 * 1024 + 321  # published as a multipart upload

# What the pivnet, registry-image, git and semver gets leave in their folders (only some of it is carried).
ARTIFACTS: dict[str, bytes | int] = {
    "ops-manager/ops-manager-vsphere-3.0.36+LTS-T.ova": BIG,
    "ops-manager/metadata.json": b'{"release": {"version": "3.0.36+LTS-T"}}\n',
    "ops-manager/metadata.yaml": b"release:\n  version: 3.0.36+LTS-T\n",
    "ops-manager/version": b"3.0.36+LTS-T#2026-11-01T00:00:00Z",
    "elastic-runtime/cf-6.0.10+LTS-T.pivotal": 300_000,
    "elastic-runtime/metadata.json": b'{"release": {"version": "6.0.10+LTS-T"}}\n',
    "elastic-runtime/version": b"6.0.10+LTS-T#2026-11-02T00:00:00Z",
    "stemcells/bosh-stemcell-1.500-vsphere-esxi-ubuntu-jammy-go_agent.tgz": 200_000,
    "stemcells/version": b"1.500#2026-11-03T00:00:00Z",
    "task-image/image.tar": 1_000_000,
    "task-image/digest": b"sha256:" + b"ab" * 32,
    "task-image/tag": b"6.0.1",
    "task-image/labels.json": b"{}",
    "pipelines/.git/HEAD": b"ref: refs/heads/main\n",
    "pipelines/README.md": b"# install pipelines\n",
    "pipelines/airgapped/install-pcf.yml": yaml.safe_dump(
        {
            "resources": [
                {
                    "name": "ops-manager",
                    "type": "s3",
                    "source": {"bucket": "((products_bucket))", "regexp": "ops-manager/ops-manager-vsphere-(.*).ova"},
                }
            ],
            "jobs": [{"name": "install-opsman", "plan": [{"get": "ops-manager", "trigger": True}]}],
        }
    ).encode(),
    "pipelines/airgapped/install-pcf-params.yml": b"products_bucket: products\n",
    "bundle-version/version": b"1.0.0",
    "bundle-version/number": b"1.0.0",
}

# Where each carried file is published, and the regexp an install pipeline's s3 resource would use.
PUBLISHED = {
    "ops-manager/ops-manager-vsphere-3.0.36+LTS-T.ova": ("ops-manager/ops-manager-vsphere-(.*).ova", "3.0.36+LTS-T"),
    "elastic-runtime/cf-6.0.10+LTS-T.pivotal": ("elastic-runtime/cf-(.*).pivotal", "6.0.10+LTS-T"),
    "stemcells/bosh-stemcell-1.500-vsphere-esxi-ubuntu-jammy-go_agent.tgz": (
        "stemcells/bosh-stemcell-(.*)-vsphere-esxi-ubuntu-jammy-go_agent.tgz",
        "1.500",
    ),
    "task-image/6.0.1/image.tar": (r"task-image/(.*)/image\.tar", "6.0.1"),
}
SOURCE_OF = {
    "task-image/6.0.1/image.tar": "task-image/image.tar",
    "pipelines/install-pcf.yml": "pipelines/airgapped/install-pcf.yml",
    "pipelines/install-pcf-params.yml": "pipelines/airgapped/install-pcf-params.yml",
}


# ------------------------------------------------------------------------------------------ helpers


def interpolate(value: Any, variables: dict[str, Any]) -> Any:
    """Concourse's ((var)) interpolation: a whole-value var keeps its type, an embedded one is text."""

    def lookup(ref: str) -> Any:
        var = parse_var(ref)
        found = variables[var.name]
        for f in var.fields:
            found = found[f]
        return found

    if isinstance(value, str):
        whole = re.fullmatch(r"\(\(([^()]*)\)\)", value)
        if whole and parse_var(whole.group(1)).source == ".":
            return value  # a local var (load_var): set while the build runs, not by set-pipeline
        if whole:
            return lookup(whole.group(1))
        return VAR_RE.sub(lambda m: str(lookup(m.group(1))), value)
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    return value


def load_pipeline(path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    params = yaml.safe_load(path.with_name(path.stem + "-params.example.yml").read_text())
    unknown = set(overrides) - set(params)
    assert not unknown, f"overrides for vars the example params do not have: {unknown}"
    return interpolate(yaml.safe_load(path.read_text()), {**params, **overrides})


def steps_of(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for step in job["plan"]:
        if "in_parallel" in step:
            yield from step["in_parallel"]
        else:
            yield step


def job(pipeline: dict[str, Any], name: str) -> dict[str, Any]:
    return next(j for j in pipeline["jobs"] if j["name"] == name)


def resource(pipeline: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in pipeline["resources"] if r["name"] == name)


def step(pipeline: dict[str, Any], job_name: str, kind: str, name: str) -> dict[str, Any]:
    return next(s for s in steps_of(job(pipeline, job_name)) if s.get(kind) == name)


def new_bucket(server: SeaweedServer) -> str:
    name = new_bucket_name()
    server.client().create_bucket(Bucket=name)
    return name


def objects(server: SeaweedServer, bucket: str, *, records: bool = False) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The bucket's objects: the published files, or (``records``) the transfer records publish left."""
    client = server.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            if ("/_records/" in o["Key"]) != records:
                continue
            r = client.get_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"]] = (r["Body"].read(), r.get("Metadata") or {})
    return out


_SPECIAL = re.compile(r"[\\*.\[\](){}?|^$+]")


def s3_regexp_keys(server: SeaweedServer, bucket: str, regexp: str) -> list[str]:
    """Keys an ``s3`` resource with this ``regexp`` would see: folder by folder, each level anchored."""
    client = server.client()
    found: list[str] = []
    queue = [("", regexp.removeprefix("^").removesuffix("$").split("/"))]
    while queue:
        prefix, sections = queue.pop(0)
        head, rest = sections[0], sections[1:]
        if rest and not _SPECIAL.search(head):
            queue.append((prefix + head + "/", rest))
            continue
        pattern = re.compile("^" + re.escape(prefix) + head + ("/" if rest else "") + "$")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            if rest:
                queue += [(p["Prefix"], rest) for p in page.get("CommonPrefixes", []) if pattern.match(p["Prefix"])]
            else:
                found += [o["Key"] for o in page.get("Contents", []) if pattern.match(o["Key"])]
    return sorted(found)


def counts(stdout: str) -> tuple[int, int]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("published "))
    return int(line.split("uploaded ")[1].split(" ")[0]), int(line.split("skipped ")[1].split(" ")[0])


def run_task(config: dict[str, Any], workdir: Path) -> subprocess.CompletedProcess[str]:
    """A task as Concourse runs it: its run.path and args, in a folder holding its inputs, params as env."""
    for i in config.get("inputs", []):
        assert (workdir / i["name"]).is_dir(), f"input {i['name']} missing"
    env = {k: "" if v is None else str(v) for k, v in config.get("params", {}).items()}
    proc = subprocess.run(
        [config["run"]["path"], *config["run"].get("args", [])],
        cwd=workdir,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    record_output(proc.stdout, proc.stderr)
    return proc


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def airgap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The air-gapped side's own store: a second SeaweedFS, nothing shared with the connected one."""
    server = SeaweedServer.create(tmp_path_factory.mktemp("airgap-seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def build_artifacts(root: Path, names: list[str]) -> Path:
    """The put's build folder: only the artifacts its ``inputs:`` name (Concourse 8 mounts no others)."""
    for rel, content in ARTIFACTS.items():
        if rel.split("/", 1)[0] not in names:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(content) if isinstance(content, int) else content)
    return root


# --------------------------------------------------------------------------------------------- test


def test_both_pipelines_end_to_end(
    seaweed: SeaweedServer, airgap: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    # --- connected side: create-offline-pinned-pipelines -------------------------------------------
    online = new_bucket(seaweed)
    access, secret = seaweed.credentials(writer=True)
    create = load_pipeline(
        CREATE,
        {
            "connected_s3_bucket": online,
            "connected_s3_endpoint": seaweed.endpoint,
            "connected_s3_region": REGION,
            "connected_s3_access_key_id": access,
            "connected_s3_secret_access_key": secret,
            "airgap_decryption_public_key": gpg_keys.recipient.public_armored,
            "bundle_signing_private_key": gpg_keys.signer.secret_armored,
        },
    )
    put = step(create, "create-bundle", "put", "bundle")
    build = build_artifacts(tmp_path / "build", put["inputs"])
    answer = parse_stdout(
        run_asset("out", {"source": resource(create, "bundle")["source"], "params": put["params"]}, build)
    )
    assert answer["version"] == {"version": "1.0.0"}
    bundle_name = resource(create, "bundle")["source"]["name"]

    # --- the gap: carry <name>/ across, commit objects last ------------------------------------------
    carried = new_bucket(airgap)
    src, dst = seaweed.client(), airgap.client()
    keys = [o["Key"] for o in src.list_objects_v2(Bucket=online, Prefix=bundle_name + "/").get("Contents", [])]
    assert keys and not any(k.startswith("offline-bundle-versions/") for k in keys)
    for key in sorted(keys, key=lambda k: k.endswith("/manifest.json.asc")):
        dst.put_object(Bucket=carried, Key=key, Body=src.get_object(Bucket=online, Key=key)["Body"].read())

    # --- air-gapped side: unpack-pcf-pipelines-combined ----------------------------------------------
    products = new_bucket(airgap)
    ro_access, ro_secret = airgap.credentials(readonly=True)
    wr_access, wr_secret = airgap.credentials(writer=True)
    unpack = load_pipeline(
        UNPACK,
        {
            "airgap_s3_endpoint": airgap.endpoint,
            "airgap_s3_region": REGION,
            "airgap_s3_ca_bundle": None,
            "airgap_s3_bundle_bucket": carried,
            "airgap_s3_bundle_access_key_id": ro_access,
            "airgap_s3_bundle_secret_access_key": ro_secret,
            "airgap_s3_products_bucket": products,
            "airgap_s3_products_access_key_id": wr_access,
            "airgap_s3_products_secret_access_key": wr_secret,
            "bundle_signing_public_key": gpg_keys.signer.public_armored,
            "airgap_decryption_private_key": gpg_keys.recipient.secret_armored,
        },
    )
    source = resource(unpack, "bundle")["source"]
    assert [v["version"] for v in parse_stdout(run_asset("check", {"source": source}))] == ["1.0.0"]

    # Job publish-bundle: the get (signature only, no payload), then the publish task's own script.
    work = tmp_path / "publish-bundle"
    get = step(unpack, "publish-bundle", "get", "bundle")
    (work / "bundle").mkdir(parents=True)
    parse_stdout(
        run_asset("in", {"source": source, "version": {"version": "1.0.0"}, "params": get["params"]}, work / "bundle")
    )
    assert sorted(os.listdir(work / "bundle")) == ["SHA256SUMS", "manifest.json", "manifest.json.asc", "version"]
    task = step(unpack, "publish-bundle", "task", "publish")["config"]
    proc = run_task(task, work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert counts(proc.stdout) == (len(PUBLISHED), 0)

    got = objects(airgap, products)
    # The publish left its transfer record beside the products, under the bundle's name.
    records = objects(airgap, products, records=True)
    assert [k.split("/")[:2] for k in records] == [[bundle_name, "_records"]] and "-publish-" in next(iter(records))
    assert json.loads(next(iter(records.values()))[0])["signer"] == gpg_keys.signer.fingerprint
    assert sorted(got) == sorted(PUBLISHED)  # the pipelines part is skipped: it is set, not published
    for key, (data, metadata) in got.items():
        want = (build / SOURCE_OF.get(key, key)).read_bytes()
        assert data == want, key
        assert metadata["sha256"] == hashlib.sha256(want).hexdigest()
    for key, (regexp, version) in PUBLISHED.items():
        assert s3_regexp_keys(airgap, products, regexp) == [key], regexp
        assert re.search(regexp, key).group(1) == version

    again = run_task(task, work)
    assert again.returncode == 0, again.stderr
    assert counts(again.stdout) == (0, len(PUBLISHED))

    # Job push-task-image: the image tarball is where the put's params look for it.
    work = tmp_path / "push-task-image"
    get = step(unpack, "push-task-image", "get", "bundle")
    (work / "bundle").mkdir(parents=True)
    parse_stdout(
        run_asset("in", {"source": source, "version": {"version": "1.0.0"}, "params": get["params"]}, work / "bundle")
    )
    image_put = step(unpack, "push-task-image", "put", "task-image")
    assert image_put["inputs"] == ["bundle"]
    assert (work / image_put["params"]["image"]).read_bytes() == (build / "task-image/image.tar").read_bytes()

    # Job set-pipelines: the carried pipeline and its vars file are there, and would be accepted.
    work = tmp_path / "set-pipelines"
    get = step(unpack, "set-pipelines", "get", "bundle")
    assert "trigger" not in get
    (work / "bundle").mkdir(parents=True)
    parse_stdout(
        run_asset("in", {"source": source, "version": {"version": "1.0.0"}, "params": get["params"]}, work / "bundle")
    )
    sets = next(s for s in job(unpack, "set-pipelines")["plan"] if "set_pipeline" in s)
    assert not (work / "bundle/pipelines/README.md").exists() and not (work / "bundle/pipelines/.git").exists()
    kind, problems, _ = lint_file(str(work / sets["file"]), [str(work / f) for f in sets["var_files"]])
    assert (kind, problems) == ("pipeline", [])

    # The command line on a full get: same objects, the pipelines too; a second run skips everything.
    full = tmp_path / "full"
    full.mkdir()
    parse_stdout(run_asset("in", {"source": source, "version": {"version": "1.0.0"}}, full))
    target = {
        "endpoint": airgap.endpoint,
        "region_name": REGION,
        "access_key_id": wr_access,
        "secret_access_key": wr_secret,
    }
    exploded_bucket = new_bucket(airgap)
    exploded_target = write_yaml(tmp_path / "exploded-target.yml", {**target, "bucket": exploded_bucket})
    proc = ok(run_cli("publish", "--config", exploded_target, full))
    assert counts(proc.stdout) == (len(PUBLISHED) + 2, 0)
    by_exploded = objects(airgap, exploded_bucket)
    assert {k: v for k, v in by_exploded.items() if not k.startswith("pipelines/")} == got
    assert by_exploded["pipelines/install-pcf.yml"][0] == ARTIFACTS["pipelines/airgapped/install-pcf.yml"]
    assert counts(ok(run_cli("publish", "--config", exploded_target, full)).stdout) == (0, len(PUBLISHED) + 2)

    # publish --from-config: straight from the carried bundle, the same result.
    streamed_bucket = new_bucket(airgap)
    streamed_target = write_yaml(tmp_path / "streamed-target.yml", {**target, "bucket": streamed_bucket})
    source_file = write_yaml(tmp_path / "source.yml", {k: v for k, v in source.items() if v is not None})
    proc = ok(run_cli("publish", "--from-config", source_file, "--version", "1.0.0", "--config", streamed_target))
    assert counts(proc.stdout) == (len(PUBLISHED) + 2, 0)
    assert objects(airgap, streamed_bucket) == by_exploded
    assert json.loads((full / "manifest.json").read_text())["version"] == "1.0.0"
