"""Faults on a real SeaweedFS: the store going away mid-transfer, full disks, racing puts, TLS, permissions.

Never a half-visible bundle: a put either commits or leaves no version; a get either explodes the
whole bundle or leaves the destination empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import source_env
from tests.support.concourse import asset_env, make_source, record_output, run_asset
from tests.support.paths import ASSETS_DIR, venv_bin
from tests.support.seaweed import SeaweedServer
from tests.support.sides import Sides, assert_clean_failure, small_tree
from tests.support.tls import make_ca

pytestmark = pytest.mark.integration

BIG = 300 * 1024 * 1024


def big_tree(root: Path) -> tuple[Path, str]:
    part = root / "big"
    part.mkdir(parents=True)
    h = hashlib.sha256()
    with open(part / "payload.bin", "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(BIG >> 20):
            chunk = block[:-8] + i.to_bytes(8, "big")  # cheap, distinct, incompressible enough
            h.update(chunk)
            f.write(chunk)
    return root, h.hexdigest()


@pytest.fixture(scope="module")
def big_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return big_tree(tmp_path_factory.mktemp("big"))


def start_asset(name: str, request: dict, arg: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a script in the background with the request already on its stdin (a file, as a pipe would be)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as stdin:
        json.dump(request, stdin)
        stdin.seek(0)
        return subprocess.Popen(
            [str(ASSETS_DIR / name), str(arg)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=asset_env(name, env=env),
        )


def communicate(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    record_output(out, err)  # for the suite-wide secrets audit
    return out, err


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    out, err = communicate(proc, timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def uploads(sides: Sides) -> list[dict]:
    return sides.client().list_multipart_uploads(Bucket=sides.bucket).get("Uploads", [])


def staged_bytes(dest: Path) -> int:
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


PUT = {"parts": [{"name": "big", "path": "big"}], "version": "1.0.0"}


def test_put_survives_the_store_restarting_mid_upload(
    sides: Sides, big_build: tuple[Path, str], tmp_path: Path
) -> None:
    build, digest = big_build
    request = {"source": sides.put_source, "params": PUT}
    proc = start_asset("out", request, build)
    wait_for(lambda: uploads(sides) or proc.poll() is not None, what="the multipart upload to start")
    assert proc.poll() is None, "the put finished before the fault could be injected"
    sides.server.stop()
    time.sleep(2)
    sides.server.start()
    out, err = communicate(proc)
    assert proc.returncode == 0, err
    assert json.loads(out)["version"] == {"version": "1.0.0"}
    dest = tmp_path / "dest"
    sides.get("1.0.0", dest)
    assert hashlib.sha256((dest / "big" / "payload.bin").read_bytes()).hexdigest() == digest


def test_put_fails_cleanly_when_the_store_stays_down(sides: Sides, big_build: tuple[Path, str]) -> None:
    build, _ = big_build
    request = {"source": sides.put_source, "params": PUT}
    proc = start_asset("out", request, build, env={"OFFLINE_BUNDLE_S3_RETRIES": "2"})
    wait_for(lambda: uploads(sides) or proc.poll() is not None, what="the multipart upload to start")
    with sides.server.stopped():
        out, err = communicate(proc)
        assert proc.returncode != 0 and out == ""
        assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.startswith("error:")]
    # Back up: no version is visible, and prune clears what the dead put left behind.
    assert sides.check(source=sides.get_source) == []
    assert not [k for k in sides.keys_under() if k.endswith("manifest.json.asc")]
    prune = subprocess.run(
        [str(venv_bin() / "offline-bundle"), "prune", "--keep", "1", "--grace-hours", "0"],
        env={**asset_env("check"), **source_env(sides.put_source)},
        capture_output=True,
        text=True,
    )
    record_output(prune.stdout, prune.stderr)
    assert prune.returncode == 0, prune.stderr
    assert uploads(sides) == []
    assert sides.keys_under() == []


@pytest.fixture
def big_bundle(sides: Sides, big_build: tuple[Path, str]) -> tuple[Sides, str]:
    build, digest = big_build
    sides.put(build, PUT)
    return sides, digest


def test_get_resumes_after_the_store_restarts_mid_download(big_bundle: tuple[Sides, str], tmp_path: Path) -> None:
    sides, digest = big_bundle
    dest = tmp_path / "dest"
    dest.mkdir()
    request = {"source": sides.get_source, "version": {"version": "1.0.0"}}
    proc = start_asset("in", request, dest)
    wait_for(lambda: staged_bytes(dest) > 1024 * 1024 or proc.poll() is not None, what="the download to start")
    assert proc.poll() is None, "the get finished before the fault could be injected"
    sides.server.kill()
    time.sleep(2)
    sides.server.start()
    out, err = communicate(proc)
    assert proc.returncode == 0, err
    assert "resuming with a ranged GET" in err  # it really was interrupted, and resumed
    assert hashlib.sha256((dest / "big" / "payload.bin").read_bytes()).hexdigest() == digest
    assert not [p for p in os.listdir(dest) if p.startswith(".")]


def test_get_fails_cleanly_when_the_store_stays_down(big_bundle: tuple[Sides, str], tmp_path: Path) -> None:
    sides, _ = big_bundle
    dest = tmp_path / "dest"
    dest.mkdir()
    request = {"source": sides.get_source, "version": {"version": "1.0.0"}}
    proc = start_asset("in", request, dest, env={"OFFLINE_BUNDLE_S3_RETRIES": "2"})
    wait_for(lambda: staged_bytes(dest) > 1024 * 1024 or proc.poll() is not None, what="the download to start")
    sides.server.kill()  # at once: a graceful stop lets a fast download finish first
    try:
        out, err = communicate(proc)
    finally:
        sides.server.start()
    assert_clean_failure(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "downloading", dest)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs (mounting needs root, as CI and these machines have; else the test is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    opts = "size=4m,nr_inodes=40"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_not_enough_space_is_refused_before_downloading(sides: Sides, small_disk: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    (build / "a").mkdir(parents=True)
    (build / "a" / "big").write_bytes(os.urandom(6 * 1024 * 1024))
    sides.put(build, {"parts": [{"name": "a", "path": "a"}], "version": "1"})
    dest = small_disk / "dest"
    proc = sides.in_("1", dest)
    assert_clean_failure(proc, "not enough free space", dest)
    assert "payload SHA-256" not in proc.stderr  # nothing was downloaded


def test_a_disk_that_fills_anyway_leaves_nothing(sides: Sides, small_disk: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    (build / "a").mkdir(parents=True)
    for i in range(60):  # fits in bytes, not in the 40 inodes of the small disk
        (build / "a" / f"f{i}").write_text(str(i))
    sides.put(build, {"parts": [{"name": "a", "path": "a"}], "version": "1"})
    dest = small_disk / "dest"
    assert_clean_failure(sides.in_("1", dest), "No space left on device", dest)


def test_two_puts_of_one_version_never_mix(sides: Sides, tmp_path: Path) -> None:
    builds = [small_tree(tmp_path / f"b{i}", a=f"a from {i}" * 1000, b=f"b from {i}" * 1000) for i in range(2)]
    params = {"parts": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}], "version": "1.0.0"}
    request = {"source": sides.put_source, "params": params}
    procs = [start_asset("out", request, b) for b in builds]
    results = [finish(p) for p in procs]
    assert any(r.returncode == 0 for r in results), [r.stderr for r in results]
    for r in results:
        if r.returncode != 0:
            assert "committed" in r.stderr and "Traceback" not in r.stderr
    dest = tmp_path / "dest"
    sides.get("1.0.0", dest)
    a, b = (dest / "a" / "a.txt").read_text(), (dest / "b" / "b.txt").read_text()
    assert {a[:8], b[:8]} in ({"a from 0", "b from 0"}, {"a from 1", "b from 1"})


def test_missing_bucket_and_read_only_put(sides: Sides, tmp_path: Path) -> None:
    proc = run_asset("check", {"source": {**sides.get_source, "bucket": "no-such-bucket-here"}})
    assert_clean_failure(proc, "NoSuchBucket")
    ro = make_source(
        sides.server,
        sides.bucket,
        use_readonly_identity=True,
        **{
            k: v
            for k, v in sides.put_source.items()
            if k not in ("access_key_id", "secret_access_key", "bucket", "endpoint")
        },
    )
    proc = sides.out(
        small_tree(tmp_path / "b", a="x"), {"parts": [{"name": "a", "path": "a"}], "version": "1"}, source=ro
    )
    assert_clean_failure(proc, "AccessDenied")
    assert sides.keys_under() == []


# ------------------------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeaweedServer, str, str]]:
    base = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_ca(base / "pki")
    server = SeaweedServer.create(base / "weed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        https_port = s.getsockname()[1]
    server.ports["s3.port.https"] = https_port
    server.extra_args = [f"-s3.cert.file={cert}", f"-s3.key.file={key}"]
    server.start()
    server.client().create_bucket(Bucket="tls-bucket")
    try:
        yield server, f"https://127.0.0.1:{https_port}", ca.read_text()
    finally:
        server.stop()


def tls_source(server: SeaweedServer, endpoint: str, sides: Sides, **extra: object) -> dict:
    return {
        **sides.put_source,
        **extra,
        "bucket": "tls-bucket",
        "endpoint": endpoint,
        "access_key_id": server.rw_access_key,
        "secret_access_key": server.rw_secret_key,
        "trusted_public_keys": [sides.keys.signer.public_armored],
        "decryption_private_key": sides.keys.recipient.secret_armored,
    }


def test_tls_with_a_private_ca(sides: Sides, tls_server: tuple[SeaweedServer, str, str], tmp_path: Path) -> None:
    server, endpoint, ca_pem = tls_server
    build = small_tree(tmp_path / "b", a="over TLS")
    params = {"parts": [{"name": "a", "path": "a"}], "version": "1"}

    with_ca = tls_source(server, endpoint, sides, ca_bundle=ca_pem)
    sides.put(build, params, source=with_ca)
    dest = tmp_path / "d1"
    sides.get("1", dest, source=with_ca)
    assert (dest / "a" / "a.txt").read_text() == "over TLS"

    without = tls_source(server, endpoint, sides)
    proc = run_asset("check", {"source": without}, env={"OFFLINE_BUNDLE_S3_RETRIES": "1"})
    assert_clean_failure(proc, "certificate verify failed")

    skipping = tls_source(server, endpoint, sides, skip_ssl_verification=True)
    proc = run_asset("check", {"source": skipping})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"version": "1"}]
    assert proc.stderr.count("warning: skip_ssl_verification") == 1
