"""``offline-bundle prune``: the newest N versions and what they reference stay; the rest goes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.concourse import asset_env, record_output
from tests.support.paths import venv_bin
from tests.support.sides import Sides, small_tree

pytestmark = pytest.mark.integration


def cli(sides: Sides, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the put side's source in OFFLINE_BUNDLE_* variables (the writer identity)."""
    env = asset_env("check")
    for k, v in sides.put_source.items():
        env[f"OFFLINE_BUNDLE_{k.upper()}"] = "\n".join(v) if isinstance(v, list) else str(v)
    proc = subprocess.run([str(venv_bin() / "offline-bundle"), *args], env=env, capture_output=True, text=True)
    record_output(proc.stdout, proc.stderr)
    return proc


def versions(sides: Sides) -> list[str]:
    return sorted(k.split("/")[1] for k in sides.keys_under() if k.endswith("/manifest.json.asc"))


def test_prune_keeps_the_newest_and_what_they_reference(sides: Sides, tmp_path: Path) -> None:
    params = {"parts": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}]}
    for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.10.0"]):
        build = small_tree(tmp_path / f"b{i}", a="stable", b=f"changes {v}")
        sides.put(build, {**params, "version": v})
    assert len(sides.blobs()) == 5  # one shared a, four b
    dead = "demo/_blobs/" + "dead" * 8  # a put that died mid-upload: its id, never completed
    stale = sides.client().create_multipart_upload(Bucket=sides.bucket, Key=dead)["UploadId"]

    young = cli(sides, "prune", "--keep", "2")  # default grace: young unreferenced payloads stay
    assert young.returncode == 0, young.stderr
    assert versions(sides) == ["1.10.0", "1.2.0"]  # the newest two by SemVer, not by string order
    assert len(sides.blobs()) == 5 and "kept 2 younger than the grace period" in young.stderr

    dry = cli(sides, "prune", "--keep", "1", "--grace-hours", "0", "--dry-run")
    assert dry.returncode == 0 and "would delete version 1.2.0" in dry.stderr
    assert versions(sides) == ["1.10.0", "1.2.0"]

    done = cli(sides, "prune", "--keep", "2", "--grace-hours", "0")
    assert done.returncode == 0, done.stderr
    assert len(sides.blobs()) == 3  # shared a, and b of the two kept versions
    uploads = sides.client().list_multipart_uploads(Bucket=sides.bucket).get("Uploads", [])
    assert stale not in [u["UploadId"] for u in uploads]
    for v in ("1.2.0", "1.10.0"):
        dest = tmp_path / f"dest-{v}"
        sides.get(v, dest)
        assert (dest / "b" / "b.txt").read_text() == f"changes {v}"


def test_prune_refuses_keep_zero(sides: Sides) -> None:
    proc = cli(sides, "prune", "--keep", "0")
    assert proc.returncode == 1 and "at least 1" in proc.stderr
