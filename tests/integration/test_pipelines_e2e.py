"""Both pipelines, every job, step by step, with the real scripts and two SeaweedFS stores.

The pipeline files are read and interpolated with their example params (test endpoints and keys
swapped in), so the test runs what the YAML says. Connected side: both jobs, ``create-bundle`` (its
put with its params and only its ``inputs:`` mounted) and ``bundle-pinned-pipelines`` (its pin and
fetch tasks' own scripts against a real git repository, the load_var, the put). The gap: one bundle
crosses on a medium (``export``/``import``), the other over a link (``mirror``), as the pipelines'
headers say. Air-gapped side: every job on the bundles of its resource (gets with their params, the
publish tasks' own scripts, the put of the image, the set_pipeline files), then the layout the
install pipelines' ``s3`` resources read, with the regexps they would use, and the pipeline
``set-pinned-pipelines`` sets, followed to the objects it reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_bundle.lint.pipeline import VAR_RE, lint_file, lint_paths, parse_var
from tests.support.cli import cli_env, ok, run_cli, write_yaml
from tests.support.concourse import parse_stdout, record_output, run_asset
from tests.support.gitrepo import GitRepo
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
    # A pipeline that bundle-pinned-pipelines makes offline: its git resource is locked and carried.
    "pipelines/airgapped/tools.yml": yaml.safe_dump(
        {
            "resources": [
                {"name": "automation", "type": "git", "source": {"uri": "((tools_git_uri))", "branch": "main"}}
            ],
            "jobs": [{"name": "follow", "plan": [{"get": "automation", "trigger": True}]}],
        }
    ).encode(),
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
PIPELINE_FILES = sum(1 for k in ARTIFACTS if k.startswith("pipelines/airgapped/"))
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


def tools_repo(path: Path) -> GitRepo:
    """The git repository the pinned pipeline follows (file://: fetched for real, by git)."""
    path.mkdir(parents=True)
    repo = GitRepo(path)
    repo.git("init", "--quiet", "-b", "main")
    repo.commit("tools", {"README.md": "automation tasks\n", "tasks/apply.sh": "#!/bin/sh\necho apply\n"})
    return repo


def get(source: dict[str, Any], version: str, params: dict[str, Any], dest: Path) -> dict[str, Any]:
    """A get step: ``in`` into the step's folder, as Concourse mounts it for the next steps."""
    dest.mkdir(parents=True)
    request = {"source": source, "version": {"version": version}, "params": params}
    return parse_stdout(run_asset("in", request, dest))


def check(source: dict[str, Any]) -> list[str]:
    return [v["version"] for v in parse_stdout(run_asset("check", {"source": source}))]


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------- test


def test_every_job_of_both_pipelines_goes_green_on_every_bundle(
    seaweed: SeaweedServer, airgap: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    online = new_bucket(seaweed)
    access, secret = seaweed.credentials(writer=True)
    repo = tools_repo(tmp_path / "git" / "tools")
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
            "pin_pipelines": "airgapped/tools.yml",
            "pin_vars": yaml.safe_dump({"tools_git_uri": repo.uri}),
            "pin_keep": "",
            "fetch_credentials": "{}",
        },
    )
    bundle_name = resource(create, "bundle")["source"]["name"]
    pinned_name = resource(create, "pinned-bundle")["source"]["name"]
    assert bundle_name != pinned_name

    # --- connected side, job create-bundle: the put, with only its inputs mounted ------------------
    put = step(create, "create-bundle", "put", "bundle")
    build = build_artifacts(tmp_path / "create-bundle", put["inputs"])
    answer = parse_stdout(
        run_asset("out", {"source": resource(create, "bundle")["source"], "params": put["params"]}, build)
    )
    assert answer["version"] == {"version": "1.0.0"}

    # --- connected side, job bundle-pinned-pipelines: pin and fetch tasks, load_var, the put -------
    work = build_artifacts(tmp_path / "bundle-pinned-pipelines", ["pipelines"])
    for name in ("pin", "fetch"):
        config = step(create, "bundle-pinned-pipelines", "task", name)["config"]
        for out in config.get("outputs", []):
            (work / out["name"]).mkdir()
        proc = run_task(config, work)
        assert proc.returncode == 0, f"task {name}:\n{proc.stdout}\n{proc.stderr}"
    load = step(create, "bundle-pinned-pipelines", "load_var", "fetched-parts")
    fetched_parts = json.loads((work / load["file"]).read_text())
    put = step(create, "bundle-pinned-pipelines", "put", "pinned-bundle")
    (work / "pinned-bundle-version").mkdir()
    (work / "pinned-bundle-version" / "version").write_text("1.0.0")  # its own semver: 0.0.0, bumped
    assert set(put["inputs"]) <= {p.name for p in work.iterdir()}
    request = {
        "source": resource(create, "pinned-bundle")["source"],
        "params": {**put["params"], "parts": fetched_parts},
    }
    assert parse_stdout(run_asset("out", request, work))["version"] == {"version": "1.0.0"}
    lock_hash = hashlib.sha256((work / "pinned" / "offline.lock.yml").read_bytes()).hexdigest()[:12]
    git_part = next(p for p in fetched_parts if p["name"] != "pinned-pipelines")
    assert sorted(p["name"] for p in fetched_parts) == sorted([git_part["name"], "pinned-pipelines"])

    # --- the gap: create-bundle's bundle on a medium, the pinned one over a link ---------------------
    carried = new_bucket(airgap)
    wr_access, wr_secret = airgap.credentials(writer=True)
    trusted = {"trusted_public_keys": [gpg_keys.signer.public_armored]}
    connected = {
        "bucket": online,
        "endpoint": seaweed.endpoint,
        "region_name": REGION,
        "access_key_id": access,
        "secret_access_key": secret,
        **trusted,
    }
    far = {
        "bucket": carried,
        "endpoint": airgap.endpoint,
        "region_name": REGION,
        "access_key_id": wr_access,
        "secret_access_key": wr_secret,
        **trusted,
    }
    medium = tmp_path / "medium"
    here = write_yaml(tmp_path / "connected.yml", {**connected, "name": bundle_name})
    there = write_yaml(tmp_path / "airgapped.yml", {**far, "name": bundle_name})
    ok(run_cli("export", "--config", here, "--to", medium))
    assert sorted(p.name for p in medium.iterdir()) == [bundle_name]
    ok(run_cli("import", "--config", there, "--from", medium))
    link_from = write_yaml(tmp_path / "link-from.yml", {**connected, "name": pinned_name})
    link_to = write_yaml(tmp_path / "link-to.yml", {**far, "name": pinned_name})
    ok(run_cli("mirror", "--from-config", link_from, "--to-config", link_to))

    # --- air-gapped side: unpack-pcf-pipelines-combined ----------------------------------------------
    products = new_bucket(airgap)
    ro_access, ro_secret = airgap.credentials(readonly=True)
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
            "pinned_pipeline_file": "tools.yml",
        },
    )
    source = resource(unpack, "bundle")["source"]
    pinned_source = resource(unpack, "pinned-bundle")["source"]
    # Both bundles are version 1.0.0 of their own name (each has its own semver): each resource lists
    # only its own job's bundles, so a get with parts: never meets the other job's parts.
    assert (source["name"], pinned_source["name"]) == (bundle_name, pinned_name)
    assert check(source) == ["1.0.0"] and check(pinned_source) == ["1.0.0"]
    jobs_run: set[str] = set()

    def parts_of(folder: Path) -> list[str]:
        return sorted(p["name"] for p in json.loads((folder / "manifest.json").read_text())["parts"])

    # Job publish-bundle: the get (signature only, no payload), then the publish task's own script.
    work = tmp_path / "publish-bundle"
    get(source, "1.0.0", step(unpack, "publish-bundle", "get", "bundle")["params"], work / "bundle")
    # skip_download: no part fetched, so no SHA256SUMS (an empty one would fail sha256sum -c)
    assert sorted(os.listdir(work / "bundle")) == ["manifest.json", "manifest.json.asc", "version"]
    assert parts_of(work / "bundle") == sorted(
        p["name"] for p in step(create, "create-bundle", "put", "bundle")["params"]["parts"]
    )
    task = step(unpack, "publish-bundle", "task", "publish")["config"]
    proc = run_task(task, work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert counts(proc.stdout) == (len(PUBLISHED), 0)
    jobs_run.add("publish-bundle")

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
    get(source, "1.0.0", step(unpack, "push-task-image", "get", "bundle")["params"], work / "bundle")
    image_put = step(unpack, "push-task-image", "put", "task-image")
    assert image_put["inputs"] == ["bundle"]
    assert (work / image_put["params"]["image"]).read_bytes() == (build / "task-image/image.tar").read_bytes()
    jobs_run.add("push-task-image")

    # Job set-pipelines: the carried pipeline and its vars file are there, and would be accepted.
    work = tmp_path / "set-pipelines"
    sets_get = step(unpack, "set-pipelines", "get", "bundle")
    assert "trigger" not in sets_get
    get(source, "1.0.0", sets_get["params"], work / "bundle")
    sets = next(s for s in job(unpack, "set-pipelines")["plan"] if "set_pipeline" in s)
    assert not (work / "bundle/pipelines/README.md").exists() and not (work / "bundle/pipelines/.git").exists()
    kind, problems, _ = lint_file(str(work / sets["file"]), [str(work / f) for f in sets["var_files"]])
    assert (kind, problems) == ("pipeline", [])
    jobs_run.add("set-pipelines")

    # Job publish-pinned-bundle: every part, the git tree where the rewritten pipeline reads it.
    work = tmp_path / "publish-pinned-bundle"
    pinned_get = step(unpack, "publish-pinned-bundle", "get", "pinned-bundle")
    get(pinned_source, "1.0.0", pinned_get["params"], work / "pinned-bundle")
    assert parts_of(work / "pinned-bundle") == sorted(p["name"] for p in fetched_parts)
    task = step(unpack, "publish-pinned-bundle", "task", "publish")["config"]
    proc = run_task(task, work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pinned_keys = sorted(set(objects(airgap, products)) - set(got))
    assert counts(proc.stdout) == (len(pinned_keys), 0)
    assert f"offline/pipelines/{lock_hash}/tools.yml" in pinned_keys
    assert f"offline/pipelines/{lock_hash}/offline.lock.yml" in pinned_keys
    (git_key,) = [k for k in pinned_keys if k.startswith(git_part["destination"])]
    records = objects(airgap, products, records=True)
    assert sorted({k.split("/")[0] for k in records}) == sorted([bundle_name, pinned_name])
    jobs_run.add("publish-pinned-bundle")

    # Job set-pinned-pipelines: the rewritten pipeline, set with the step's vars, is accepted; what is
    # left (its S3 credentials) is the credential manager's; each s3 resource finds its carried object.
    work = tmp_path / "set-pinned-pipelines"
    sets_get = step(unpack, "set-pinned-pipelines", "get", "pinned-bundle")
    assert "trigger" not in sets_get
    get(pinned_source, "1.0.0", sets_get["params"], work / "pinned-bundle")
    sets = next(s for s in job(unpack, "set-pinned-pipelines")["plan"] if "set_pipeline" in s)
    step_vars = write_yaml(tmp_path / "set-pinned-vars.yml", sets["vars"])
    report = lint_paths(str(work / sets["file"]), [str(step_vars)])
    assert (report.kind, report.problems) == ("pipeline", [])
    left = sorted({n.message.split("))")[0].removeprefix("((") for n in report.notes})
    assert left == ["offline_s3_access_key_id", "offline_s3_secret_access_key"]
    rewritten = interpolate(
        yaml.safe_load((work / sets["file"]).read_text()),
        {**sets["vars"], "offline_s3_access_key_id": ro_access, "offline_s3_secret_access_key": ro_secret},
    )
    (follow,) = [s for s in steps_of(job(rewritten, "follow")) if "get" in s]
    s3 = resource(rewritten, follow["get"])
    assert s3["type"] == "s3" and s3["source"]["bucket"] == products
    assert s3_regexp_keys(airgap, products, s3["source"]["regexp"]) == [follow["version"]["path"]] == [git_key]
    tree = untar(objects(airgap, products)[git_key][0])
    assert tree["README.md"] == b"automation tasks\n" and tree["tasks/apply.sh"].startswith(b"#!/bin/sh")
    jobs_run.add("set-pinned-pipelines")
    assert jobs_run == {j["name"] for j in unpack["jobs"]}

    # The command line on a full get: same objects, the pipelines too; a second run skips everything
    # (--target names the target store; --config, the contract's spelling, is the same option).
    full = tmp_path / "full"
    get(source, "1.0.0", {}, full)
    target = {
        "endpoint": airgap.endpoint,
        "region_name": REGION,
        "access_key_id": wr_access,
        "secret_access_key": wr_secret,
    }
    exploded_bucket = new_bucket(airgap)
    exploded_target = write_yaml(tmp_path / "exploded-target.yml", {**target, "bucket": exploded_bucket})
    proc = ok(run_cli("publish", "--target", exploded_target, full))
    assert counts(proc.stdout) == (len(PUBLISHED) + PIPELINE_FILES, 0)
    by_exploded = objects(airgap, exploded_bucket)
    assert {k: v for k, v in by_exploded.items() if not k.startswith("pipelines/")} == got
    assert by_exploded["pipelines/install-pcf.yml"][0] == ARTIFACTS["pipelines/airgapped/install-pcf.yml"]
    assert counts(ok(run_cli("publish", "--config", exploded_target, full)).stdout) == (
        0,
        len(PUBLISHED) + PIPELINE_FILES,
    )

    # publish --from-config: straight from the carried bundle, the same result.
    streamed_bucket = new_bucket(airgap)
    streamed_target = write_yaml(tmp_path / "streamed-target.yml", {**target, "bucket": streamed_bucket})
    source_file = write_yaml(tmp_path / "source.yml", {k: v for k, v in source.items() if v is not None})
    proc = ok(run_cli("publish", "--from-config", source_file, "--version", "1.0.0", "--config", streamed_target))
    assert counts(proc.stdout) == (len(PUBLISHED) + PIPELINE_FILES, 0)
    assert objects(airgap, streamed_bucket) == by_exploded
    assert json.loads((full / "manifest.json").read_text())["version"] == "1.0.0"
