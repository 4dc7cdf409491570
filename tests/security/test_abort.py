"""An aborted step leaves nothing behind: Concourse aborts with SIGTERM, mid-stream.

Each test starts the real script or command with its own TMPDIR, waits until it is visibly in the
middle of its work (a staging folder filling up, a multipart upload open), sends SIGTERM and then
looks for what must not remain: plaintext in the destination, a GnuPG home (with the decryption
key in it), a gpg-agent or gpg process, an open multipart upload.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import write_yaml
from tests.support.concourse import ASSETS_DIR, asset_env, record_output
from tests.support.paths import venv_bin
from tests.support.sides import Sides

pytestmark = pytest.mark.integration

PAYLOAD_MB = 100  # big enough that decryption and upload take seconds on a busy machine
STAGING = ".offline-bundle-staging-"


def big_build(root: Path, mb: int = PAYLOAD_MB) -> Path:
    """One part of incompressible data (urandom: compression cannot shorten the stream)."""
    part = root / "a"
    part.mkdir(parents=True)
    with open(part / "big.bin", "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    return root


@pytest.fixture
def big(sides: Sides, tmp_path: Path) -> Sides:
    build = big_build(tmp_path / "build")
    sides.put(build, {"parts": [{"name": "a", "path": "a"}], "version": "1.0.0"}, timeout=600)
    shutil.rmtree(build)
    return sides


def start(
    argv: list[str], tmpdir: Path, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    tmpdir.mkdir(exist_ok=True)
    full = asset_env(os.path.basename(argv[0]), home=tmpdir, env={"TMPDIR": str(tmpdir), **(env or {})})
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full)
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not touch it
    return proc


def wait_until(what: str, cond: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended before {what}: exit {proc.returncode}\n{err.decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def terminate(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM as Concourse sends it; the exit status and one line are part of the contract."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    record_output(out.decode(), err.decode())
    stderr = err.decode()
    assert proc.returncode == 1, stderr
    assert out == b"", out
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: terminated (SIGTERM); what this step had staged was removed"], stderr
    assert "Traceback" not in stderr
    return stderr


def staged_bytes(dest: Path) -> int:
    total = 0
    for staging in dest.glob(STAGING + "*"):
        for root, _, files in os.walk(staging):
            total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total


def processes_naming(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (gpg and gpg-agent carry --homedir)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def assert_nothing_left(tmpdir: Path, dest: Path | None = None) -> None:
    deadline = time.monotonic() + 5  # an agent told to exit may take a moment
    while processes_naming(tmpdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_naming(tmpdir) == []
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("ob-gpg-")] == []
    if dest is not None:
        assert os.listdir(dest) == []


def in_request(s: Sides) -> bytes:
    return json.dumps({"source": s.get_source, "version": {"version": "1.0.0"}}).encode()


def test_sigterm_during_in_leaves_no_plaintext_key_or_process(big: Sides, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    tmpdir = tmp_path / "tmp"
    proc = start([str(ASSETS_DIR / "in"), str(dest)], tmpdir, in_request(big))
    wait_until("decryption is under way", lambda: staged_bytes(dest) > (8 << 20), proc)
    assert [p for p in tmpdir.iterdir() if p.name.startswith("ob-gpg-")], "no GnuPG home to clean: proves nothing"
    terminate(proc)
    assert_nothing_left(tmpdir, dest)


def test_sigterm_during_unpack_leaves_nothing(big: Sides, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    tmpdir = tmp_path / "tmp"
    config = write_yaml(tmp_path / "get.yml", big.get_source)
    proc = start([str(venv_bin() / "offline-bundle"), "unpack", "--config", str(config), str(dest)], tmpdir)
    wait_until("decryption is under way", lambda: staged_bytes(dest) > (8 << 20), proc)
    terminate(proc)
    assert_nothing_left(tmpdir, dest)


def test_sigterm_during_out_leaves_no_key_home_and_no_open_upload(sides: Sides, tmp_path: Path) -> None:
    build = big_build(tmp_path / "build")
    tmpdir = tmp_path / "tmp"
    request: dict[str, Any] = {"source": sides.put_source, "params": {"parts": [{"name": "a", "path": "a"}]}}
    client = sides.client()

    def uploading() -> bool:
        return bool(client.list_multipart_uploads(Bucket=sides.bucket).get("Uploads"))

    proc = start([str(ASSETS_DIR / "out"), str(build)], tmpdir, json.dumps(request).encode())
    wait_until("a multipart upload is open", uploading, proc)
    terminate(proc)
    assert_nothing_left(tmpdir)
    assert client.list_multipart_uploads(Bucket=sides.bucket).get("Uploads", []) == []
    assert sides.keys_under("demo/") == [], "an aborted put committed or stored something"


def without_root_powers() -> list[str]:
    """A command prefix under which deleting inside a 0555 folder fails, as it does for any user but root.

    Running as ``nobody`` is not possible where the project's Python lives in root's home; instead
    root's file-permission capabilities are dropped from the bounding set (so exec cannot regain
    them), which leaves uid 0 bound by modes like any owner.
    """
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root and setpriv is not installed: cannot run the get without root's powers")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def test_a_failed_get_as_non_root_removes_read_only_folders_from_staging(sides: Sides, tmp_path: Path) -> None:
    runner = without_root_powers()
    probe = tmp_path / "probe"
    (probe / "ro").mkdir(parents=True)
    (probe / "ro" / "f").write_text("x")
    (probe / "ro").chmod(0o555)
    blocked = subprocess.run([*runner, "rm", "-f", str(probe / "ro" / "f")], capture_output=True, check=False)
    (probe / "ro").chmod(0o755)
    assert blocked.returncode != 0, "deleting inside a 0555 folder worked: the test would prove nothing"

    build = tmp_path / "build"
    (build / "a" / "locked").mkdir(parents=True)
    (build / "a" / "locked" / "f.txt").write_text("inside a read-only folder")
    (build / "a" / "locked").chmod(0o555)
    (build / "b").mkdir()
    # Parts are fetched side by side: b is large and altered near its end, so that a (small) is in
    # staging, read-only folder and all, before b fails.
    (build / "b" / "g.bin").write_bytes(os.urandom(16 << 20))
    params = {"parts": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}], "version": "1.0.0"}
    sides.put(build, params)
    (build / "a" / "locked").chmod(0o755)
    # Alter part b's payload: the get fails after part a (with its 0555 folder) is in staging.
    commit = sides.client().get_object(Bucket=sides.bucket, Key="demo/1.0.0/manifest.json.asc")["Body"].read()
    manifest = json.loads(commit.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0])
    key_b = next(p for p in manifest["parts"] if p["name"] == "b")["payload"]["key"]
    key_b = key_b if key_b.startswith("demo/") else "demo/" + key_b  # relative to the bundle folder, or not
    blob = bytearray(sides.client().get_object(Bucket=sides.bucket, Key=key_b)["Body"].read())
    blob[len(blob) - 4096] ^= 1
    sides.client().put_object(Bucket=sides.bucket, Key=key_b, Body=bytes(blob))
    dest = tmp_path / "dest"
    dest.mkdir()
    tmpdir = tmp_path / "tmp"
    proc = start([*runner, str(ASSETS_DIR / "in"), str(dest)], tmpdir, in_request(sides))
    out, err = proc.communicate(timeout=120)
    record_output(out.decode(), err.decode())
    stderr = err.decode()
    assert proc.returncode == 1, stderr
    assert "error: part b" in stderr, stderr
    assert "part a: payload SHA-256 verified" in stderr, "part a never reached staging: proves nothing\n" + stderr
    assert_nothing_left(tmpdir, dest)
