"""`make bench`: the project's put/get beside the original pipelines' way and beside the floor (issue 3).

One run, on one local SeaweedFS, alternating the contenders round by round so that a noisy,
shared machine slows them alike:

  up side    project-out     assets/out as Concourse runs it (request on stdin, build dir as $1)
             baseline-up     tar to a file, sha256sum manifest, gpg --encrypt -z 0 to a file, aws s3 cp up
             floor-up        aws s3 cp of a ready file the size of the encrypted payload
  down side  project-in      assets/in into a fresh empty folder
             baseline-down   aws s3 cp down, gpg --decrypt | tar x, sha256sum --strict -c
             floor-down      aws s3 cp of that ready file down

then a two-part run (the data set as two parts, one at a time against side by side), a small-files
run (100,000 files of 4 KiB through out and in) and the cost of each piece alone (components.py,
with the model of a larger worker built on it). Every figure is the median of BENCH_RUNS rounds;
ratios are medians of the per-round ratios (paired). See docs/benchmarks.md.

Environment knobs:
  BENCH_GB=2            data set size in GiB (the big files scale; the 500 small files stay)
  BENCH_RUNS=3          rounds
  BENCH_TINY_FILES=500  the 4 KiB files of the main data set
  BENCH_SMALL_FILES=100000, BENCH_SKIP_SMALL=1, BENCH_SMALL_RUNS=1
  BENCH_PARTS_RUNS=2, BENCH_SKIP_PARTS=1   the two-part run
  BENCH_SKIP_COMPONENTS=1                  the pieces alone (components.py) and the model
  BENCH_PROFILE=1       after the rounds, one more out and in under py-spy (flame graphs in bench/results/)
  BENCH_KEEP=1          keep bench/work (data set, keys) for the next run; default: removed at the end
  BENCH_WORK=DIR        work folder (default bench/work)
  BENCH_SAMPLE_MS=50    /proc sampling interval
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH_DIR))

import components  # noqa: E402
import parts  # noqa: E402
import proctree  # noqa: E402
from proctree import Measurement, measure  # noqa: E402

from tests.support.concourse import asset_env, make_source  # noqa: E402
from tests.support.seaweed import REGION, SeaweedServer  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
VENV_BIN = REPO / ".venv" / "bin"
RESULTS = BENCH_DIR / "results"

UP = ("project-out", "baseline-up", "floor-up")
DOWN = ("project-in", "baseline-down", "floor-down")

# Targets of issue 15 (the floor ratios, CPU, small files), and those of issue 3 it left as they were.
OUT_VS_FLOOR_MAX = 1.15
IN_VS_FLOOR_MAX = 1.3
OUT_CPU_PER_GIB_MAX = 5.0
IN_CPU_PER_GIB_MAX = 4.0
VS_BASELINE_MIN = 2.0
RSS_MAX_MB = 150
TMP_FILE_MAX = 1_000_000  # 1 MB
SMALL_FILES_PER_S_MIN = 10_000


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


# -- the data set ---------------------------------------------------------------------------------


def dataset_layout(gb: float) -> list[tuple[str, int]]:
    """(relative path, size) of every file: at 2 GiB three 600 MiB files, one 200 MiB, 500 x 4 KiB."""
    scale = gb / 2
    files = [(f"big-{i}.bin", int(600 * MiB * scale)) for i in (1, 2, 3)]
    files.append(("medium.bin", int(200 * MiB * scale)))
    files += [(f"small/f-{i:04d}.bin", 4096) for i in range(env_int("BENCH_TINY_FILES", 500))]
    return files


def small_layout(count: int) -> list[tuple[str, int]]:
    return [(f"d-{i // 1000:03d}/f-{i:06d}.bin", 4096) for i in range(count)]


def write_random(path: Path, size: int, seed: str) -> None:
    """Incompressible bytes fast: AES-CTR keystream from openssl (~1 GB/s), else os.urandom."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if size >= 8 * MiB and shutil.which("openssl"):
        gen = subprocess.Popen(
            ["openssl", "enc", "-aes-128-ctr", "-nosalt", "-pbkdf2", "-pass", f"pass:{seed}", "-in", "/dev/zero"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert gen.stdout is not None
        left = size
        with path.open("wb") as f:
            while left:
                block = gen.stdout.read(min(left, 4 * MiB))
                if not block:
                    raise RuntimeError("openssl stopped early")
                f.write(block)
                left -= len(block)
        gen.kill()
        gen.wait()
        return
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(os.urandom(n))
            left -= n


def make_dataset(root: Path, layout: list[tuple[str, int]]) -> None:
    """Generate the files unless an identical layout is already there (BENCH_KEEP)."""
    marker = root.parent / (root.name + ".layout.json")
    want = json.dumps(layout)
    if root.is_dir() and marker.exists() and marker.read_text() == want:
        log(f"reusing data set {root}")
        return
    shutil.rmtree(root, ignore_errors=True)
    t = time.monotonic()
    for rel, size in layout:
        if size >= 8 * MiB:
            write_random(root / rel, size, secrets.token_hex(8))
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(os.urandom(size))
    subprocess.run(["sync"], check=False)
    marker.write_text(want)
    total = sum(s for _, s in layout)
    log(f"generated {len(layout)} files, {total / GiB:.2f} GiB in {root} ({time.monotonic() - t:.1f} s, not timed)")


def tar_size(layout: list[tuple[str, int]]) -> int:
    """Size of a GNU tar of the layout (headers, padding, end blocks, 10 KiB records)."""
    dirs = {str(Path(rel).parent) for rel, _ in layout} - {"."}
    body = 512 * (1 + len(dirs))  # "./" and each folder
    body += sum(512 + -(-size // 512) * 512 for _, size in layout)
    body += 1024
    return -(-body // 10240) * 10240


# -- keys, store, tools ---------------------------------------------------------------------------


@dataclass
class Keys:
    sign_secret: str
    sign_public: str
    decrypt_secret: str
    decrypt_public: str
    decrypt_fpr: str
    gnupghome: Path


def make_keys(work: Path) -> Keys:
    """Throwaway keys made with the project's own `offline-bundle keygen`; the decryption key is
    also imported into an isolated GNUPGHOME for the baseline's gpg."""
    keys = work / "keys"
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir(parents=True)
    out = {}
    for role in ("sign", "decrypt"):
        proc = subprocess.run(
            [str(VENV_BIN / "offline-bundle"), "keygen", "--role", role, "--out", str(keys / f"{role}.key")],
            capture_output=True,
            text=True,
            check=True,
        )
        # stdout is the armoured public key alone; the fingerprint is on stderr.
        fpr = next(ln.split(":", 1)[1].strip() for ln in proc.stderr.splitlines() if ln.startswith("fingerprint:"))
        public = proc.stdout
        out[role] = (fpr, public, (keys / f"{role}.key").read_text())
    home = Path(f"/tmp/obbench-gpg-{secrets.token_hex(4)}")  # short: gpg-agent's socket path limit
    home.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--import", str(keys / "decrypt.key")],
        capture_output=True,
        check=True,
    )
    # The import started a gpg-agent; stop it now so that it is not counted in the first timed run.
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)
    return Keys(
        sign_secret=out["sign"][2],
        sign_public=out["sign"][1],
        decrypt_secret=out["decrypt"][2],
        decrypt_public=out["decrypt"][1],
        decrypt_fpr=out["decrypt"][0],
        gnupghome=home,
    )


def first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    git = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "resource", "assets"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem / GiB, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gpg": first_line(["gpg", "--version"]),
        "aws": first_line([str(VENV_BIN / "aws"), "--version"]),
        "weed": first_line([str(VENV_BIN / "weed"), "version"]),
        "git_commit": git,
        "resource_dirty": bool(dirty),
    }


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# -- the bench ------------------------------------------------------------------------------------


class Bench:
    def __init__(self) -> None:
        self.gb = env_float("BENCH_GB", 2.0)
        self.runs = env_int("BENCH_RUNS", 3)
        self.small_files = env_int("BENCH_SMALL_FILES", 100_000)
        self.small_runs = env_int("BENCH_SMALL_RUNS", 1)
        self.skip_small = env_flag("BENCH_SKIP_SMALL")
        self.skip_parts = env_flag("BENCH_SKIP_PARTS")
        self.parts_runs = env_int("BENCH_PARTS_RUNS", 2)
        self.skip_components = env_flag("BENCH_SKIP_COMPONENTS")
        self.parts: dict[str, Any] = {}
        self.asset_prefix: list[str] = []  # a command the assets run under (cpu_split.py: perf record)
        self.components: dict[str, Any] = {}
        self.profile = env_flag("BENCH_PROFILE")
        self.keep = env_flag("BENCH_KEEP")
        self.interval = env_int("BENCH_SAMPLE_MS", 50) / 1000
        self.work = Path(os.environ.get("BENCH_WORK") or BENCH_DIR / "work").resolve()
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.layout = dataset_layout(self.gb)
        self.data_bytes = sum(s for _, s in self.layout)
        self.build = self.work / f"data-{self.gb:g}gib"  # the build folder; the data set is build/data
        self.floor_file = self.work / "floor.bin"
        self.server: SeaweedServer | None = None
        self.keys: Keys | None = None
        self.samples: dict[str, list[dict[str, Any]]] = {c: [] for c in UP + DOWN}
        self.payloads: dict[str, list[int]] = {"project": [], "baseline": []}
        self.small: dict[str, Any] = {}
        self.profiles: dict[str, Any] = {}
        self.seq = 0

    # -- plumbing

    @property
    def server_pid(self) -> int:
        assert self.server is not None and self.server._proc is not None
        return self.server._proc.pid

    def scratch(self, name: str) -> Path:
        self.seq += 1
        path = self.work / "scratch" / f"{self.seq:03d}-{name}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def aws_env(self, home: Path) -> dict[str, str]:
        assert self.server is not None
        access, secret = self.server.credentials()
        return {
            "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.work / "aws-config"),
            "GNUPGHOME": str(self.keys.gnupghome if self.keys else ""),
            "EP": self.server.endpoint,
        }

    def run(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        *,
        stdin: bytes | None = None,
        watch: tuple[Path, ...] = (),
    ) -> Measurement:
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        m = measure(
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=logs / f"{self.seq:03d}-{name}.out",
            stderr=logs / f"{self.seq:03d}-{name}.err",
            exclude_pids={self.server_pid},
            server_pid=self.server_pid,
            watch=watch,
            interval=self.interval,
        )
        if m.returncode != 0:
            err = (logs / f"{self.seq:03d}-{name}.err").read_text(errors="replace")[-3000:]
            raise ContenderFailed(f"{name} exited {m.returncode}; stderr tail:\n{err}")
        if m.leftover_processes:
            log(f"warning: {name} left processes running: {m.leftover_processes}")
        log(
            f"{name}: {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU, peak RSS {m.peak_rss_bytes / MiB:.0f} MiB "
            f"(PSS {m.peak_pss_bytes / MiB:.0f} MiB), "
            f"wrote {m.disk_write_bytes / MiB:.0f} MiB, server CPU {m.server_cpu_s:.2f} s"
        )
        return m

    def phases(self, name: str) -> dict[str, float | None]:
        """When the run's progress started, reached 100 %, and its last stderr line (stamped logs)."""
        first = done = last = None
        path = self.work / "logs" / f"{self.seq:03d}-{name}.err"
        for line in path.read_text(errors="replace").splitlines():
            stamp, _, text = line.strip().partition(" ")
            try:
                t = float(stamp)
            except ValueError:
                continue
            last = t
            if "%)" in text and first is None:
                first = t
            if "(100%)" in text and done is None:
                done = t
        return {"first_progress_s": first, "progress_100_s": done, "last_stderr_line_s": last}

    def stdout_json(self, name: str) -> Any:
        return json.loads((self.work / "logs" / f"{self.seq:03d}-{name}.out").read_text())

    # -- contenders

    def project_out(
        self,
        bucket: str,
        build: Path,
        version: str,
        part: str | list[str],
        env_extra: dict[str, str] | None = None,
        name: str = "project-out",
    ) -> Measurement:
        """``assets/out`` putting ``part`` (a folder of ``build``, or several: one part each)."""
        assert self.server and self.keys
        parts = [part] if isinstance(part, str) else part
        home, tmp = self.scratch("out-home"), self.scratch("out-tmp")
        source = make_source(
            self.server,
            bucket,
            name="bench",
            recipient_public_keys=[self.keys.decrypt_public],
            signing_private_key=self.keys.sign_secret,
        )
        request = {"source": source, "params": {"parts": [{"name": p, "path": p} for p in parts], "version": version}}
        env = asset_env("out", home=home, env={"TMPDIR": str(tmp), **(env_extra or {})})
        m = self.run(
            name,
            [*self.asset_prefix, str(REPO / "assets" / "out"), str(build)],
            env,
            home,
            stdin=json.dumps(request).encode(),
            watch=(tmp, home),
        )
        m.phases = self.phases(name)
        answer = self.stdout_json(name)
        assert answer["version"] == {"version": version}, answer
        shutil.rmtree(home)
        shutil.rmtree(tmp)
        return m

    def project_in(
        self,
        bucket: str,
        version: str,
        expect_files: int,
        env_extra: dict[str, str] | None = None,
        name: str = "project-in",
    ) -> Measurement:
        assert self.server and self.keys
        home, tmp, dest = self.scratch("in-home"), self.scratch("in-tmp"), self.scratch("in-dest")
        source = make_source(
            self.server,
            bucket,
            name="bench",
            trusted_public_keys=[self.keys.sign_public],
            decryption_private_key=self.keys.decrypt_secret,
        )
        request = {"source": source, "version": {"version": version}, "params": {}}
        env = asset_env("in", home=home, env={"TMPDIR": str(tmp), **(env_extra or {})})
        m = self.run(
            name,
            [*self.asset_prefix, str(REPO / "assets" / "in"), str(dest)],
            env,
            home,
            stdin=json.dumps(request).encode(),
            watch=(tmp, home),
        )
        m.phases = self.phases(name)
        sums = (dest / "SHA256SUMS").read_text().splitlines()
        if len(sums) != expect_files:
            raise ContenderFailed(f"project-in: SHA256SUMS lists {len(sums)} files, expected {expect_files}")
        for p in (home, tmp, dest):
            shutil.rmtree(p)
        return m

    def baseline_up(self, bucket: str) -> Measurement:
        assert self.keys
        cwd = self.scratch("baseline-up")
        script = f"""set -euo pipefail
(cd "$DATA" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > SHA256SUMS
tar cf bundle.tar -C "$DATA" . -C "$PWD" SHA256SUMS
gpg --batch --yes --trust-model always --encrypt -z 0 --recipient "$FPR" -o bundle.tar.gpg bundle.tar
aws s3 cp --only-show-errors --endpoint-url "$EP" bundle.tar.gpg "s3://{bucket}/baseline/bundle.tar.gpg"
gpgconf --kill all
"""
        env = self.aws_env(cwd) | {"DATA": str(self.build / "data"), "FPR": self.keys.decrypt_fpr}
        m = self.run("baseline-up", ["bash", "-c", script], env, cwd)
        self.payloads["baseline"].append((cwd / "bundle.tar.gpg").stat().st_size)
        shutil.rmtree(cwd)
        return m

    def baseline_down(self, bucket: str) -> Measurement:
        cwd = self.scratch("baseline-down")
        script = f"""set -euo pipefail
aws s3 cp --only-show-errors --endpoint-url "$EP" "s3://{bucket}/baseline/bundle.tar.gpg" bundle.tar.gpg
mkdir out
gpg --batch --decrypt bundle.tar.gpg | tar x -C out
(cd out && sha256sum --strict -c SHA256SUMS)
gpgconf --kill all
"""
        m = self.run("baseline-down", ["bash", "-c", script], self.aws_env(cwd), cwd)
        shutil.rmtree(cwd)
        return m

    def floor_up(self, bucket: str) -> Measurement:
        cwd = self.scratch("floor-up")
        argv = [
            str(VENV_BIN / "aws"),
            "s3",
            "cp",
            "--only-show-errors",
            "--endpoint-url",
            self.server.endpoint,
            str(self.floor_file),
            f"s3://{bucket}/floor/floor.bin",
        ]
        m = self.run("floor-up", argv, self.aws_env(cwd), cwd)
        shutil.rmtree(cwd)
        return m

    def floor_down(self, bucket: str) -> Measurement:
        cwd = self.scratch("floor-down")
        argv = [
            str(VENV_BIN / "aws"),
            "s3",
            "cp",
            "--only-show-errors",
            "--endpoint-url",
            self.server.endpoint,
            f"s3://{bucket}/floor/floor.bin",
            "floor.bin",
        ]
        m = self.run("floor-down", argv, self.aws_env(cwd), cwd)
        got = (cwd / "floor.bin").stat().st_size
        if got != self.floor_file.stat().st_size:
            raise ContenderFailed(f"floor-down: got {got} bytes")
        shutil.rmtree(cwd)
        return m

    # -- store housekeeping

    def new_bucket(self, label: str) -> str:
        assert self.server
        bucket = f"bench-{label}-{secrets.token_hex(3)}"
        self.server.client().create_bucket(Bucket=bucket)
        return bucket

    def blob_sizes(self, bucket: str) -> list[int]:
        assert self.server
        s3 = self.server.client()
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="bench/_blobs/")
        return [o["Size"] for page in pages for o in page.get("Contents", [])]

    def drop_bucket(self, bucket: str) -> None:
        """Delete every object and the bucket (its collection's volumes go with it: disk is freed)."""
        assert self.server
        s3 = self.server.client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        s3.delete_bucket(Bucket=bucket)

    # -- the run

    def setup(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work / "scratch", ignore_errors=True)
        shutil.rmtree(self.work / "logs", ignore_errors=True)
        (self.work / "aws-config").write_text("[default]\ns3 =\n    addressing_style = path\n")
        make_dataset(self.build / "data", self.layout)
        floor_size = tar_size(self.layout) + 1024  # + OpenPGP framing, within a few hundred bytes
        if not (self.floor_file.exists() and self.floor_file.stat().st_size == floor_size):
            write_random(self.floor_file, floor_size, secrets.token_hex(8))
        self.keys = make_keys(self.work)
        self.server = SeaweedServer.create(self.work / "seaweed")
        self.server.start()
        proctree.reap_orphans(exclude={self.server_pid}, linger=5.0)  # daemons of the setup steps
        log(f"SeaweedFS at {self.server.endpoint} (pid {self.server_pid}); keys made with offline-bundle keygen")

    def attempt(self, name: str, fn: Callable[[], Measurement], round_no: int) -> dict[str, Any]:
        """One contender run as a sample; a failure is recorded (and the run goes on) instead of raised."""
        try:
            sample = fn().as_dict()
        except ContenderFailed as e:
            log(f"FAILED {name}: {e}")
            sample = {"error": str(e)}
        sample["round"] = round_no
        return sample

    def rounds(self) -> None:
        """Each round: the three contenders in turn (a different one first each round), each one's
        up then down in its own bucket, dropped straight after: the store never holds more than one
        payload, which keeps an 8 GiB run within the disk of a small machine."""
        files = len(self.layout)
        pairs = (("project-out", "project-in"), ("baseline-up", "baseline-down"), ("floor-up", "floor-down"))
        for r in range(self.runs):
            version = f"r{r + 1}.{self.stamp}"
            log(f"round {r + 1}/{self.runs}")
            for up, down in pairs[r % 3 :] + pairs[: r % 3]:
                bucket = self.new_bucket(f"r{r + 1}-{up.split('-')[0]}")
                jobs: dict[str, Callable[[], Measurement]] = {
                    "project-out": lambda: self.project_out(bucket, self.build, version, "data"),  # noqa: B023
                    "baseline-up": lambda: self.baseline_up(bucket),  # noqa: B023
                    "floor-up": lambda: self.floor_up(bucket),  # noqa: B023
                    "project-in": lambda: self.project_in(bucket, version, files),  # noqa: B023
                    "baseline-down": lambda: self.baseline_down(bucket),  # noqa: B023
                    "floor-down": lambda: self.floor_down(bucket),  # noqa: B023
                }
                self.samples[up].append(self.attempt(up, jobs[up], r + 1))
                if up == "project-out":
                    self.payloads["project"].append(sum(self.blob_sizes(bucket)))
                self.samples[down].append(self.attempt(down, jobs[down], r + 1))
                self.drop_bucket(bucket)

    def small_run(self) -> None:
        layout = small_layout(self.small_files)
        build = self.work / "small"
        make_dataset(build / "small", layout)
        n = len(layout)
        self.small = {"files": n, "bytes": n * 4096, "out": {"runs": []}, "in": {"runs": []}}
        for r in range(self.small_runs):
            bucket = self.new_bucket(f"s{r + 1}")
            version = f"s{r + 1}.{self.stamp}"
            for side, fn in (
                ("out", lambda: self.project_out(bucket, build, version, "small")),  # noqa: B023
                ("in", lambda: self.project_in(bucket, version, n)),  # noqa: B023
            ):
                self.small[side]["runs"].append(self.attempt(f"small-{side}", fn, r + 1))
            self.drop_bucket(bucket)
        for side in ("out", "in"):
            good = ok(self.small[side]["runs"])
            wall = statistics.median(m["wall_s"] for m in good) if good else None
            self.small[side]["median_wall_s"] = wall
            self.small[side]["files_per_s"] = n / wall if wall else None
            self.small[side]["peak_rss_mb"] = max(m["peak_rss_bytes"] for m in good) / 1e6 if good else None
            self.small[side]["peak_pss_mb"] = max(m["peak_pss_bytes"] for m in good) / 1e6 if good else None
        if not self.keep:
            shutil.rmtree(build, ignore_errors=True)
            (self.work / "small.layout.json").unlink(missing_ok=True)

    def profile_run(self) -> None:
        """One more out and in under py-spy (every Python process, 100 Hz), twice: once for a flame
        graph, once for collapsed stacks summarised as top frames. Not part of the timed figures."""
        spy = VENV_BIN / "py-spy"
        if not spy.exists():
            log("BENCH_PROFILE: py-spy is not installed in the venv (pip install py-spy); skipped")
            return
        RESULTS.mkdir(exist_ok=True)
        for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
            bucket = self.new_bucket(f"p{ext}")
            version = f"prof.{self.stamp}"
            for side in ("out", "in"):
                wrapper = self.work / f"spy-{side}"
                wrapper.write_text(
                    "#!/bin/sh\n"
                    f'exec "{spy}" record --nonblocking --subprocesses --rate 100 --format {fmt} '
                    f'-o "{RESULTS / f"{self.stamp}-{side}.{ext}"}" -- "{REPO / "assets" / side}" "$@"\n'
                )
                wrapper.chmod(0o755)
                if side == "out":
                    self._profiled_out(wrapper, bucket, version)
                else:
                    self._profiled_in(wrapper, bucket, version)
            self.drop_bucket(bucket)
        for side in ("out", "in"):
            raw = RESULTS / f"{self.stamp}-{side}.txt"
            self.profiles[side] = {
                "flamegraph": str(RESULTS / f"{self.stamp}-{side}.svg"),
                "top_self_percent": top_frames(raw, inclusive=False),
                "top_inclusive_percent": top_frames(raw, inclusive=True),
            }

    def _profiled_out(self, wrapper: Path, bucket: str, version: str) -> None:
        assert self.server and self.keys
        home = self.scratch("prof-out")
        source = make_source(
            self.server,
            bucket,
            name="bench",
            recipient_public_keys=[self.keys.decrypt_public],
            signing_private_key=self.keys.sign_secret,
        )
        request = {"source": source, "params": {"parts": [{"name": "data", "path": "data"}], "version": version}}
        env = asset_env("out", home=home)
        m = self.run("profile-out", [str(wrapper), str(self.build)], env, home, stdin=json.dumps(request).encode())
        self.profiles.setdefault("wall_s_under_py_spy", {})["out"] = m.wall_s
        shutil.rmtree(home)

    def _profiled_in(self, wrapper: Path, bucket: str, version: str) -> None:
        assert self.server and self.keys
        home, dest = self.scratch("prof-in"), self.scratch("prof-in-dest")
        source = make_source(
            self.server,
            bucket,
            name="bench",
            trusted_public_keys=[self.keys.sign_public],
            decryption_private_key=self.keys.decrypt_secret,
        )
        request = {"source": source, "version": {"version": version}, "params": {}}
        env = asset_env("in", home=home)
        m = self.run("profile-in", [str(wrapper), str(dest)], env, home, stdin=json.dumps(request).encode())
        self.profiles.setdefault("wall_s_under_py_spy", {})["in"] = m.wall_s
        shutil.rmtree(home)
        shutil.rmtree(dest)

    def teardown(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.keys is not None:
            subprocess.run(
                ["gpgconf", "--homedir", str(self.keys.gnupghome), "--kill", "all"], capture_output=True, check=False
            )
            shutil.rmtree(self.keys.gnupghome, ignore_errors=True)
        if self.keep:
            shutil.rmtree(self.work / "scratch", ignore_errors=True)
            shutil.rmtree(self.work / "seaweed", ignore_errors=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- results

    def summary(self, machine: dict[str, Any], load: dict[str, Any], elapsed: float) -> dict[str, Any]:
        gib = self.data_bytes / GiB
        contenders: dict[str, Any] = {}
        for name, runs in self.samples.items():
            good = ok(runs)
            med: dict[str, Any] | None = None
            if good:
                med = {k: statistics.median(r[k] for r in good) for k in MEDIAN_KEYS}
                med |= {
                    "cpu_s_per_gib": med["cpu_s"] / gib,
                    "peak_rss_mb": med["peak_rss_bytes"] / 1e6,
                    "max_peak_rss_mb": max(r["peak_rss_bytes"] for r in good) / 1e6,
                    "peak_pss_mb": med["peak_pss_bytes"] / 1e6,
                    "max_peak_pss_mb": max(r["peak_pss_bytes"] for r in good) / 1e6,
                    "throughput_mib_s": self.data_bytes / MiB / med["wall_s"],
                    "disk_write_per_data_byte": med["disk_write_bytes"] / self.data_bytes,
                }
            failures = [r["error"] for r in runs if "error" in r]
            contenders[name] = {"median": med, "failures": failures, "runs": runs}

        def paired(a: str, b: str) -> float | None:
            pairs = [
                x["wall_s"] / y["wall_s"]
                for x, y in zip(self.samples[a], self.samples[b], strict=True)
                if "wall_s" in x and "wall_s" in y
            ]
            return statistics.median(pairs) if pairs else None

        ratios = {
            "out_vs_floor_up": paired("project-out", "floor-up"),
            "baseline_up_vs_out": paired("baseline-up", "project-out"),
            "in_vs_floor_down": paired("project-in", "floor-down"),
            "baseline_down_vs_in": paired("baseline-down", "project-in"),
            "baseline_up_vs_floor_up": paired("baseline-up", "floor-up"),
            "baseline_down_vs_floor_down": paired("baseline-down", "floor-down"),
        }

        def stat(name: str, key: str) -> float | None:
            med = contenders[name]["median"]
            return med[key] if med else None

        good_out = ok(self.samples["project-out"])
        max_tmp = max(r["tmp_largest_file_bytes"] for r in good_out) / 1e6 if good_out else None
        targets = [
            target("out wall <= 1.15 x upload floor", ratios["out_vs_floor_up"], "<=", OUT_VS_FLOOR_MAX, "x"),
            target("in wall <= 1.3 x download floor", ratios["in_vs_floor_down"], "<=", IN_VS_FLOOR_MAX, "x"),
            target(
                "out CPU s per GiB (process tree) <= 5",
                stat("project-out", "cpu_s_per_gib"),
                "<=",
                OUT_CPU_PER_GIB_MAX,
                "s/GiB",
            ),
            target(
                "in CPU s per GiB (process tree) <= 4",
                stat("project-in", "cpu_s_per_gib"),
                "<=",
                IN_CPU_PER_GIB_MAX,
                "s/GiB",
            ),
            target(
                "out peak memory (PSS sum) <= 150 MB", stat("project-out", "max_peak_pss_mb"), "<=", RSS_MAX_MB, "MB"
            ),
            target("in peak memory (PSS sum) <= 150 MB", stat("project-in", "max_peak_pss_mb"), "<=", RSS_MAX_MB, "MB"),
            target("out >= 2 x faster than baseline", ratios["baseline_up_vs_out"], ">=", VS_BASELINE_MIN, "x"),
            target("in >= 2 x faster than baseline", ratios["baseline_down_vs_in"], ">=", VS_BASELINE_MIN, "x"),
            target("out: no temporary file > 1 MB", max_tmp, "<=", TMP_FILE_MAX / 1e6, "MB"),
            # Writes to tmpfs never reach a block device: /proc/<pid>/io counts none, so there the
            # figure would read 0 and prove nothing.
            target(
                "in writes each byte once",
                None if fs_type(self.work) == "tmpfs" else stat("project-in", "disk_write_per_data_byte"),
                "<=",
                1.05,
                "x data",
            ),
        ]
        if self.small:
            for side, what in (("out", "pack (out)"), ("in", "unpack (in)")):
                value = self.small[side]["files_per_s"]
                targets.append(
                    target(f"small files {what} >= 10,000 files/s", value, ">=", SMALL_FILES_PER_S_MIN, "files/s")
                )
                pss = self.small[side]["peak_pss_mb"]
                targets.append(
                    target(f"small files {what} peak memory (PSS sum) <= 150 MB", pss, "<=", RSS_MAX_MB, "MB")
                )
        return {
            "timestamp": self.stamp,
            "bench_gb": self.gb,
            "runs": self.runs,
            "elapsed_s": elapsed,
            "dataset": {
                "bytes": self.data_bytes,
                "gib": gib,
                "files": len(self.layout),
                "layout": f"3 x {self.layout[0][1] / MiB:g} MiB, 1 x {self.layout[3][1] / MiB:g} MiB, "
                f"{len(self.layout) - 4} x 4 KiB; packed by out as one part",
            },
            "payload_bytes": {
                "project": statistics.median(self.payloads["project"]) if self.payloads["project"] else None,
                "baseline": statistics.median(self.payloads["baseline"]) if self.payloads["baseline"] else None,
                "floor": self.floor_file.stat().st_size if self.floor_file.exists() else None,
            },
            "machine": machine,
            "work_fs": fs_type(self.work),
            "load": load,
            "sample_interval_s": self.interval,
            "contenders": contenders,
            "ratios": ratios,
            "targets": targets,
            "small_files": self.small or None,
            "parts": self.parts or None,
            "components": self.components or None,
            "profile": self.profiles or None,
        }


MEDIAN_KEYS = (
    "wall_s",
    "cpu_s",
    "cpu_user_s",
    "cpu_sys_s",
    "peak_rss_bytes",
    "peak_pss_bytes",
    "disk_write_bytes",
    "server_cpu_s",
    "tmp_largest_file_bytes",
    "tmp_peak_total_bytes",
)


class ContenderFailed(RuntimeError):
    """A contender exited non-zero or produced a wrong result."""


def ok(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if "error" not in r]


def fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (the longest mount point that contains it)."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    real = str(path.resolve())
    for line in mounts:
        bits = line.split()
        if len(bits) < 3:
            continue
        inside = real == bits[1] or real.startswith(bits[1].rstrip("/") + "/")
        if inside and len(bits[1]) > len(best):
            best, kind = bits[1], bits[2]
    return kind


def target(name: str, value: float | None, op: str, limit: float, unit: str) -> dict[str, Any]:
    met = None
    if value is not None:
        met = value <= limit if op == "<=" else value >= limit
    return {"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}


def top_frames(raw: Path, *, inclusive: bool, limit: int = 15) -> list[tuple[str, float]]:
    """Share of samples per function from py-spy's collapsed stacks ("a;b;c count" lines)."""
    counts: dict[str, int] = {}
    total = 0
    if not raw.exists():
        return []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        names = set(frames) if inclusive else {frames[-1]}
        for frame in names:
            counts[frame] = counts.get(frame, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [(name, round(100 * c / total, 1)) for name, c in ranked] if total else []


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def render_table(res: dict[str, Any]) -> str:
    """The results as Markdown-friendly text (also used by bench/plot.py for docs/benchmarks.md)."""
    gib = res["dataset"]["gib"]
    lines = [
        f"{gib:.2f} GiB ({res['dataset']['files']} files: {res['dataset']['layout']}), medians of "
        f"{res['runs']} round(s), {res['machine']['nproc']} cores, run {res['timestamp']}"
        + (
            f"; work folder on {res['work_fs']} (disk writes are not seen there)"
            if res.get("work_fs") == "tmpfs"
            else ""
        ),
        "",
        "| contender | wall s | MiB/s | CPU s | CPU s/GiB | peak RSS MB | peak PSS MB | disk writes MiB "
        "| S3 server CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in res["contenders"].items():
        m = c["median"]
        if m is None:
            lines.append(f"| {name} | FAILED ({len(c['failures'])}/{res['runs']}) | | | | | | | |")
            continue
        failed = f" ({len(c['failures'])} failed)" if c["failures"] else ""
        lines.append(
            f"| {name}{failed} | {m['wall_s']:.2f} | {m['throughput_mib_s']:.0f} | {m['cpu_s']:.2f} | "
            f"{m['cpu_s_per_gib']:.2f} | {m['peak_rss_mb']:.0f} | {fmt(m.get('peak_pss_mb'), '.0f')} | "
            f"{m['disk_write_bytes'] / MiB:.0f} | "
            f"{m['server_cpu_s']:.2f} |"
        )
    r = res["ratios"]
    lines += [
        "",
        "Wall-time ratios (median of the per-round ratios):",
        "",
        f"    out / upload floor        {fmt(r['out_vs_floor_up'])}   (target <= {OUT_VS_FLOOR_MAX})",
        f"    baseline up / out         {fmt(r['baseline_up_vs_out'])}   (target >= {VS_BASELINE_MIN})",
        f"    in / download floor       {fmt(r['in_vs_floor_down'])}   (target <= {IN_VS_FLOOR_MAX})",
        f"    baseline down / in        {fmt(r['baseline_down_vs_in'])}   (target >= {VS_BASELINE_MIN})",
        f"    baseline up / floor       {fmt(r['baseline_up_vs_floor_up'])}",
        f"    baseline down / floor     {fmt(r['baseline_down_vs_floor_down'])}",
    ]
    small = res.get("small_files")
    if small:
        lines += [
            "",
            f"Small files, {small['files']} x 4 KiB: out {fmt(small['out']['median_wall_s'], '.1f')} s = "
            f"{fmt(small['out']['files_per_s'], '.0f')} files/s (peak RSS {fmt(small['out']['peak_rss_mb'], '.0f')} "
            f"MB, PSS {fmt(small['out'].get('peak_pss_mb'), '.0f')} MB), in {fmt(small['in']['median_wall_s'], '.1f')} "
            f"s = {fmt(small['in']['files_per_s'], '.0f')} files/s (peak RSS "
            f"{fmt(small['in']['peak_rss_mb'], '.0f')} MB, PSS {fmt(small['in'].get('peak_pss_mb'), '.0f')} MB)",
        ]
    if res.get("parts"):
        lines += ["", *parts.render(res["parts"])]
    if res.get("components"):
        lines += ["", *components.render(res["components"], None)]
    good_out = ok(res["contenders"]["project-out"]["runs"])
    if good_out:
        largest = max(x["tmp_largest_file_bytes"] for x in good_out)
        lines += [
            "",
            f"Largest temporary file seen while out ran (its TMPDIR and HOME, sampled): {largest / 1e3:.1f} kB; "
            f"all that out wrote to disk: {res['contenders']['project-out']['median']['disk_write_bytes'] / MiB:.1f} "
            "MiB (median)",
        ]
    for name, what in (("project-out", "the upload"), ("project-in", "the download")):
        tails = [
            x["wall_s"] - x["phases"]["progress_100_s"]
            for x in ok(res["contenders"][name]["runs"])
            if (x.get("phases") or {}).get("progress_100_s") is not None
        ]
        starts = [
            x["phases"]["first_progress_s"]
            for x in ok(res["contenders"][name]["runs"])
            if (x.get("phases") or {}).get("first_progress_s") is not None
        ]
        if tails and starts:
            lines += [
                "",
                f"{name}: first progress line after {statistics.median(starts):.1f} s (median); {what} reached "
                f"100 % {statistics.median(tails):.1f} s before the step ended (median; per round: "
                f"{', '.join(f'{t:.1f}' for t in tails)} s)",
            ]
    lines += ["", "Targets (issue 15; the baseline, temporary-file and write-once rows from issue 3):", ""]
    for t in res["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        lines.append(f"- [{verdict}] {t['target']}: {fmt(t['value'])} {t['unit']} (limit {t['op']} {t['limit']:g})")
    lines += _failures(res)
    return "\n".join(lines)


def _failures(res: dict[str, Any]) -> list[str]:
    """One line per distinct failure of any contender, the last line of its stderr."""
    small = res.get("small_files")
    lines: list[str] = []
    failures = [(n, e) for n, c in res["contenders"].items() for e in c["failures"]]
    if small:
        failures += [
            (f"small-{side}", r["error"]) for side in ("out", "in") for r in small[side]["runs"] if "error" in r
        ]
    if res.get("parts"):
        failures += [
            (f"parts-{k}", r["error"]) for k, runs in res["parts"]["samples"].items() for r in runs if "error" in r
        ]
    if failures:
        lines += ["", "Failures:", ""]
        seen = set()
        for name, err in failures:
            if (name, err) not in seen:
                seen.add((name, err))
                last = err.strip().splitlines()[-1].strip() if err.strip() else err
                stamp, _, text = last.partition(" ")
                with contextlib.suppress(ValueError):
                    float(stamp)
                    last = text.strip()  # the stamp of a stamped log line
                lines.append(f"- {name}: {last}")
    return lines


def main() -> int:
    if not (VENV_BIN / "weed").exists():
        print("bench: run `make install` first (or use `make bench`)", file=sys.stderr)
        return 2
    proctree.become_subreaper()
    # Stop cleanly (server stopped, work folder removed) on Ctrl-C and on SIGTERM, even when started
    # in the background, where a shell sets SIGINT to "ignore".
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench()
    free = shutil.disk_usage(bench.work.parent if not bench.work.exists() else bench.work).free
    need = 5 * bench.data_bytes  # data, floor file, one payload, a local tar and its .gpg
    if free < need:
        print(f"bench: {free / GiB:.1f} GiB free, about {need / GiB:.1f} GiB needed", file=sys.stderr)
        return 2
    log(f"{bench.gb:g} GiB data set, {bench.runs} round(s), work folder {bench.work}")
    t0 = time.monotonic()
    load = {"before": loadavg()}
    machine = machine_info()
    try:
        bench.setup()
        bench.rounds()
        if not bench.skip_parts:
            bench.parts = parts.run(bench, bench.parts_runs)
        if not bench.skip_small:
            bench.small_run()
        if bench.profile:
            bench.profile_run()
        if not bench.skip_components:
            log("the pieces alone (components.py)")
            bench.components = components.measure(512, bench.work)
    finally:
        bench.teardown()
    load["after"] = loadavg()
    res = bench.summary(machine, load, time.monotonic() - t0)
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(res, indent=2) + "\n"
    (RESULTS / f"{bench.stamp}-{bench.gb:g}gib.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(render_table(res))
    print(f"\nresults: {RESULTS / f'{bench.stamp}-{bench.gb:g}gib.json'} (and latest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
