"""``offline-bundle publish``: exploded folders and bundles straight from S3 -> objects at their destinations.

Real SeaweedFS, real gpg, the real command line. The target identity is the least-privileged writer
(read, list, write: no admin), as an air-gapped publish job would have.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import ok, run_cli, write_yaml
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import REGION, SeaweedServer, new_bucket_name
from tests.support.sides import Sides

pytestmark = pytest.mark.integration

BIG = 9 * 1024 * 1024 + 5  # above the single-PUT limit: published as a multipart upload
VERSION = "2.0.0"


def build_tree(root: Path) -> Path:
    om = root / "ops-manager"
    (om / "notes").mkdir(parents=True)
    (om / "empty").mkdir()
    (om / "ops-manager-vsphere-3.0.36.ova").write_bytes(os.urandom(BIG))
    (om / "notes" / "read me.txt").write_text("spaces and all\n")
    (om / "zero").write_bytes(b"")
    os.symlink("notes/read me.txt", om / "link")
    tiles = root / "tiles"
    tiles.mkdir()
    (tiles / "cf-6.0.10.pivotal").write_bytes(os.urandom(4096))
    (root / "pipelines").mkdir()
    (root / "pipelines" / "install.yml").write_text("jobs: []\n")
    return root


PARTS = [
    {"name": "ops-manager", "path": "ops-manager"},
    {"name": "elastic-runtime", "path": "tiles/*.pivotal", "destination": "products/elastic-runtime/"},
    {"name": "pipelines", "path": "pipelines"},
]

# Every regular file and where it lands (target prefix aside).
EXPECTED = {
    "ops-manager/ops-manager-vsphere-3.0.36.ova": "ops-manager/ops-manager-vsphere-3.0.36.ova",
    "ops-manager/notes/read me.txt": "ops-manager/notes/read me.txt",
    "ops-manager/zero": "ops-manager/zero",
    "products/elastic-runtime/cf-6.0.10.pivotal": "tiles/cf-6.0.10.pivotal",
    "pipelines/install.yml": "pipelines/install.yml",
}


@dataclass(frozen=True)
class Target:
    file: Path
    bucket: str
    prefix: str  # unique per target: tests share one bucket (a SeaweedFS has room for few buckets)


@pytest.fixture(scope="module")
def made(
    seaweed: SeaweedServer, gpg_keys: GpgKeys, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Sides, Path, Path]:
    """One committed bundle for the module, its build folder, and an exploded get of it."""
    seaweed.ensure_running()
    bucket = new_bucket_name()
    seaweed.client().create_bucket(Bucket=bucket)
    tmp = tmp_path_factory.mktemp("publish")
    sides = Sides.create(seaweed, bucket, gpg_keys, tmp)
    build = build_tree(tmp / "build")
    sides.put(build, {"parts": PARTS, "version": VERSION})
    exploded = tmp / "exploded"
    sides.get(VERSION, exploded)
    return sides, build, exploded


@pytest.fixture
def bundle(made: tuple[Sides, Path, Path], tmp_path: Path) -> tuple[Sides, Path, Path]:
    """The module's bundle with a private copy of the exploded folder (tests may change it)."""
    sides, build, exploded = made
    copy = tmp_path / "exploded"
    shutil.copytree(exploded, copy, symlinks=True)
    return sides, build, copy


@pytest.fixture(scope="module")
def target_bucket(seaweed: SeaweedServer) -> str:
    seaweed.ensure_running()
    bucket = new_bucket_name()
    seaweed.client().create_bucket(Bucket=bucket)
    return bucket


def make_target(server: SeaweedServer, bucket: str, tmp: Path, *, prefix: str = "", name: str = "target.yml") -> Target:
    access, secret = server.credentials(writer=True)
    unique = f"{uuid.uuid4().hex[:8]}/{prefix}"
    doc: dict[str, Any] = {
        "bucket": bucket,
        "prefix": unique,
        "endpoint": server.endpoint,
        "region_name": REGION,
        "access_key_id": access,
        "secret_access_key": secret,
    }
    return Target(write_yaml(tmp / name, doc), bucket, unique)


def source_file(sides: Sides, tmp: Path, **overrides: Any) -> Path:
    doc = {**sides.get_source, **overrides}
    return write_yaml(tmp / "source.yml", doc)


def objects(server: SeaweedServer, target: Target, *, records: bool = False) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The target's objects, keys relative to its prefix: the published files, or (``records``) the
    transfer records each publish writes under ``<prefix><name>/_records/``."""
    client = server.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=target.prefix):
        for o in page.get("Contents", []):
            if ("/_records/" in o["Key"]) != records:
                continue
            r = client.get_object(Bucket=target.bucket, Key=o["Key"])
            out[o["Key"][len(target.prefix) :]] = (r["Body"].read(), r.get("Metadata") or {})
    return out


def assert_published(server: SeaweedServer, target: Target, build: Path, prefix: str = "") -> None:
    got = objects(server, target)
    assert sorted(got) == sorted(prefix + k for k in EXPECTED)
    for key, local in EXPECTED.items():
        data, metadata = got[prefix + key]
        want = (build / local).read_bytes()
        assert data == want, key
        assert metadata.get("sha256") == hashlib.sha256(want).hexdigest(), key


def counts(stdout: str) -> tuple[int, int]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("published "))
    uploaded = int(line.split("uploaded ", 1)[1].split(" ", 1)[0])
    skipped = int(line.split("skipped ", 1)[1].split(" ", 1)[0])
    return uploaded, skipped


def test_an_exploded_bundle_is_published_under_its_destinations(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    target = make_target(seaweed, target_bucket, tmp_path, prefix="airgap/")
    proc = ok(run_cli("publish", "--config", target.file, exploded))
    assert counts(proc.stdout) == (5, 0)
    assert f"uploaded 5 file(s), {BIG + 15 + 4096 + 9} bytes" in proc.stdout
    assert "1 symlink(s), 1 empty folder(s)" in proc.stdout
    assert "not published: symlink ops-manager/link -> notes/read me.txt" in proc.stderr
    assert_published(seaweed, target, build)

    again = ok(run_cli("publish", "--config", target.file, exploded))
    assert counts(again.stdout) == (0, 5), again.stdout
    assert_published(seaweed, target, build)

    # Each publish left one transfer record in the target and one line on stderr.
    docs = publish_records(seaweed, target)
    assert [(d["event"], d["version"], d["details"]["uploaded"], d["details"]["skipped"]) for d in docs] == [
        ("publish", VERSION, 5, 0),
        ("publish", VERSION, 0, 5),
    ]
    assert docs[0]["signer"] is None and docs[0]["signature"].startswith("checked by the get")
    assert sorted(p["name"] for p in docs[0]["parts"]) == sorted(p["name"] for p in PARTS)
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith(f"record: publish of demo {VERSION} by ")]


def publish_records(server: SeaweedServer, target: Target) -> list[dict[str, Any]]:
    records = objects(server, target, records=True)
    assert all(k.startswith("demo/_records/") and k.endswith("-publish-" + k[-13:]) for k in records), records
    docs = [json.loads(data) for data, _ in records.values()]
    return sorted(docs, key=lambda d: d["at"])


def test_other_bytes_at_a_key_are_refused_unless_overwrite(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    target = make_target(seaweed, target_bucket, tmp_path)
    client = seaweed.client()
    client.put_object(
        Bucket=target.bucket, Key=target.prefix + "pipelines/install.yml", Body=b"jobs: [x]\n"
    )  # other size
    client.put_object(
        Bucket=target.bucket, Key=target.prefix + "ops-manager/zero", Body=b""
    )  # same bytes, no sha256 metadata
    tile = (build / "tiles/cf-6.0.10.pivotal").read_bytes()
    client.put_object(  # same size, other bytes, no metadata: read back and hashed
        Bucket=target.bucket,
        Key=target.prefix + "products/elastic-runtime/cf-6.0.10.pivotal",
        Body=bytes(reversed(tile)),
    )

    proc = run_cli("publish", "--config", target.file, exploded)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pipelines/install.yml already exists" in proc.stderr
    assert "products/elastic-runtime/cf-6.0.10.pivotal already exists" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: 2 file(s) not published")
    assert counts(proc.stdout) == (2, 1)  # the .ova and read me.txt went up; zero was already there
    assert (
        client.get_object(Bucket=target.bucket, Key=target.prefix + "pipelines/install.yml")["Body"].read()
        == b"jobs: [x]\n"
    )

    proc = ok(run_cli("publish", "--config", target.file, "--overwrite", exploded))
    assert counts(proc.stdout) == (2, 3)
    assert "2 of them replacing other bytes" in proc.stdout
    assert f"replaced {target.prefix}pipelines/install.yml" in proc.stderr
    objs = objects(seaweed, target)
    assert objs["pipelines/install.yml"][0] == (build / "pipelines/install.yml").read_bytes()
    assert objs["products/elastic-runtime/cf-6.0.10.pivotal"][0] == tile
    assert objs["ops-manager/zero"][1] == {}  # skipped, so left as it was


def test_a_changed_file_in_the_folder_is_refused_and_never_written(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    ova = exploded / "ops-manager/ops-manager-vsphere-3.0.36.ova"
    data = bytearray(ova.read_bytes())
    data[-1] ^= 1  # same size: only the hash can tell, at the very end of a multipart upload
    ova.chmod(0o644)
    ova.write_bytes(bytes(data))
    target = make_target(seaweed, target_bucket, tmp_path)
    proc = run_cli("publish", "--config", target.file, exploded)
    assert proc.returncode == 1
    assert "ops-manager/ops-manager-vsphere-3.0.36.ova: refused" in proc.stderr
    keys = set(objects(seaweed, target))
    assert "ops-manager/ops-manager-vsphere-3.0.36.ova" not in keys
    assert len(keys) == 4  # the others were published
    uploads = seaweed.client().list_multipart_uploads(Bucket=target.bucket, Prefix=target.prefix).get("Uploads", [])
    assert uploads == []  # the refused upload was aborted


def test_a_folder_that_does_not_match_its_manifest_publishes_nothing(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    (exploded / "pipelines" / "extra.yml").write_text("x")
    (exploded / "ops-manager" / "notes" / "read me.txt").unlink()
    target = make_target(seaweed, target_bucket, tmp_path)
    proc = run_cli("publish", "--config", target.file, exploded)
    assert proc.returncode == 1
    assert "pipelines/extra.yml is in the folder but not in manifest.json" in proc.stderr
    assert "ops-manager/notes/read me.txt is in manifest.json but not in the folder" in proc.stderr
    assert "nothing was published" in proc.stderr
    assert objects(seaweed, target) == {}


def test_parts_can_be_chosen_and_absent_parts_are_reported(
    made: tuple[Sides, Path, Path], tmp_path: Path, seaweed: SeaweedServer, target_bucket: str
) -> None:
    sides, build, _ = made
    partial = tmp_path / "partial"
    sides.get(VERSION, partial, params={"parts": ["pipelines", "elastic-runtime"]})
    target = make_target(seaweed, target_bucket, tmp_path)
    proc = ok(run_cli("publish", "--config", target.file, "--skip-part", "pipelines", partial))
    assert "parts not in the folder (not fetched by the get): ops-manager" in proc.stdout
    assert sorted(objects(seaweed, target)) == ["products/elastic-runtime/cf-6.0.10.pivotal"]
    proc = run_cli("publish", "--config", target.file, "--part", "ops-manager", partial)
    assert proc.returncode == 1 and "has no folder ops-manager" in proc.stderr
    proc = run_cli("publish", "--config", target.file, "--part", "nope", partial)
    assert proc.returncode == 1 and "nope, not in demo 2.0.0" in proc.stderr


def test_publish_straight_from_the_bundle_gives_the_same_objects(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    folder_target = make_target(seaweed, target_bucket, tmp_path, name="a.yml")
    ok(run_cli("publish", "--config", folder_target.file, exploded))
    stream_target = make_target(seaweed, target_bucket, tmp_path, name="b.yml")
    source = source_file(sides, tmp_path)
    proc = ok(run_cli("publish", "--from-config", source, "--version", VERSION, "--config", stream_target.file))
    assert counts(proc.stdout) == (5, 0)
    assert "payload SHA-256 verified" in proc.stderr
    assert objects(seaweed, stream_target) == objects(seaweed, folder_target)
    assert_published(seaweed, stream_target, build)
    again = ok(run_cli("publish", "--from-config", source, "--config", stream_target.file))  # latest version
    assert counts(again.stdout) == (0, 5)
    # From the bundle, publish checked the signature itself: its records name the signer.
    docs = publish_records(seaweed, stream_target)
    assert [(d["signer"], d["signature"]) for d in docs] == [(sides.keys.signer.fingerprint, "verified")] * 2
    assert {p["payload"]["sha256"] for p in docs[0]["parts"]} == {
        p["payload"]["sha256"] for p in json.loads((exploded / "manifest.json").read_bytes())["parts"]
    }


def test_source_and_target_from_variables_as_in_a_task(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    target = make_target(seaweed, target_bucket, tmp_path)
    doc = yaml.safe_load(target.file.read_text())
    env = {
        f"OFFLINE_BUNDLE_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
        for k, v in sides.get_source.items()
        if not isinstance(v, list)
    }
    env["OFFLINE_BUNDLE_TRUSTED_PUBLIC_KEYS"] = "".join(sides.get_source["trusted_public_keys"])
    env.update({f"OFFLINE_BUNDLE_TARGET_{k.upper()}": v for k, v in doc.items()})
    env["OFFLINE_BUNDLE_TARGET_PREFIX"] = target.prefix + "in/"
    proc = ok(run_cli("publish", "--version", VERSION, env=env))
    assert_published(seaweed, target, build, prefix="in/")
    env["OFFLINE_BUNDLE_TARGET_NAME"] = "x"
    proc = run_cli("publish", "--version", VERSION, env=env)
    assert proc.returncode == 1 and "unknown variable OFFLINE_BUNDLE_TARGET_NAME" in proc.stderr


def test_an_untrusted_bundle_publishes_nothing(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    target = make_target(seaweed, target_bucket, tmp_path)
    source = source_file(sides, tmp_path, trusted_public_keys=[sides.keys.untrusted_signer.public_armored])
    proc = run_cli("publish", "--from-config", source, "--version", VERSION, "--config", target.file)
    assert proc.returncode == 1
    assert "not among trusted_public_keys" in proc.stderr or "not a trusted key" in proc.stderr
    assert objects(seaweed, target) == {}


def test_a_payload_altered_in_the_store_stops_publishing_and_says_what_was_published(
    bundle: tuple[Sides, Path, Path], seaweed: SeaweedServer, target_bucket: str, tmp_path: Path
) -> None:
    sides, build, exploded = bundle
    client = seaweed.client()
    manifest = json.loads((exploded / "manifest.json").read_text())
    om = next(p for p in manifest["parts"] if p["name"] == "ops-manager")
    key = "demo/" + om["payload"]["key"]  # relative to the bundle's folder
    original = client.get_object(Bucket=sides.bucket, Key=key)["Body"].read()
    blob = bytearray(original)
    blob[-600] ^= 0xFF  # inside the last file's data or the tar's end: files before it verify
    client.put_object(Bucket=sides.bucket, Key=key, Body=bytes(blob))
    target = make_target(seaweed, target_bucket, tmp_path)
    source = source_file(sides, tmp_path)
    try:
        proc = run_cli("publish", "--from-config", source, "--version", VERSION, "--config", target.file)
    finally:
        client.put_object(Bucket=sides.bucket, Key=key, Body=original)  # the module's bundle, as it was
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: part ops-manager:"), last
    assert "publishing stopped" in last and "treat this version as not published" in last
    published = {
        ln.split(": ", 1)[1].removeprefix(target.prefix)
        for ln in proc.stderr.splitlines()
        if ln.startswith("published before")
    }
    got = objects(seaweed, target)
    assert set(got) == published
    for k, (data, metadata) in got.items():  # whatever went up is byte-exact
        assert metadata["sha256"] == hashlib.sha256(data).hexdigest()
        assert data == (build / EXPECTED[k]).read_bytes()


def test_bad_invocations_fail_with_one_line(
    bundle: tuple[Sides, Path, Path], tmp_path: Path, seaweed: SeaweedServer, target_bucket: str
) -> None:
    sides, build, exploded = bundle
    target = make_target(seaweed, target_bucket, tmp_path)
    cases = [
        (["publish", "--config", target.file, str(tmp_path)], "has no manifest.json"),
        (["publish", "--config", target.file, "--version", "1", str(exploded)], "not both"),
        (["publish", "--config", target.file], "nothing to publish"),
        (["publish", str(exploded)], "needs a bucket"),
    ]
    for args, words in cases:
        proc = run_cli(*args)
        assert proc.returncode == 1, args
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and words in errors[0], (args, proc.stderr)
    bad = write_yaml(tmp_path / "bad.yml", {"bucket": "abc", "name": "x"})
    proc = run_cli("publish", "--config", bad, exploded)
    assert proc.returncode == 1 and "target has unknown key name" in proc.stderr
