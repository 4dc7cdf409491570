"""Where the CPU of one `out` and one `in` goes, by process and library (`perf record`).

    .venv/bin/python bench/cpu_split.py          # BENCH_GB=1 by default; needs perf

Runs one `out` and one `in` of the bench's data set (bench/run.py's contenders, on its own
SeaweedFS) under `perf record`, then splits the samples by process (python or gpg) and by library:
libgcrypt is gpg's cipher and MDC, libcrypto is OpenSSL's SHA-256 under hashlib, the kernel is every
system call's copying (socket, pipes, files) and scheduling, libpython the interpreter, libc mostly
memmove and malloc. perf samples CPU time at a fixed rate, so samples / rate are CPU seconds (perf's
own are left out); the step's CPU as the bench measures it (perf included) is given beside. The
result goes to bench/results/<stamp>-cpusplit.json and is printed as a table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
os.environ.setdefault("BENCH_GB", "1")

import proctree  # noqa: E402
from run import RESULTS, Bench, GiB, log  # noqa: E402

CATEGORIES = (
    ("gpg", "libgcrypt", "gpg: cipher and MDC (libgcrypt)"),
    ("gpg", "kernel", "gpg: its system calls (pipes, kernel)"),
    ("gpg", "", "gpg: the rest (libc, gpg itself)"),
    ("python", "libcrypto", "Python: SHA-256 (OpenSSL under hashlib)"),
    ("python", "kernel", "Python: its system calls (socket, pipes, files; kernel)"),
    ("python", "libpython", "Python: the interpreter (libpython)"),
    ("python", "libc", "Python: copies and allocation (libc)"),
    ("python", "", "Python: the rest (extension modules, loader)"),
    ("", "", "other processes (gpg-agent, gpgconf, ...)"),
)


def category(comm: str, dso: str) -> str:
    proc = "python" if comm.startswith("python") else "gpg" if comm == "gpg" else ""
    lib = next((x for x in ("libgcrypt", "libcrypto", "libpython") if x in dso), "")
    if not lib and "kernel" in dso:
        lib = "kernel"
    elif not lib and dso.startswith("libc"):
        lib = "libc"
    for p, d, label in CATEGORIES:
        if p == proc and (d == lib or d == ""):
            return label
    return CATEGORIES[-1][2]


RATE = 999  # samples per CPU second


def split(data: Path) -> dict[str, float]:
    """CPU seconds per category (perf report by comm and DSO, with sample counts)."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "-n", "--no-children", "--sort", "comm,dso", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds: dict[str, float] = {label: 0.0 for _p, _d, label in CATEGORIES}
    for line in report.splitlines():
        fields = line.split()  # overhead, samples, comm, dso
        if len(fields) < 4 or not fields[0].endswith("%") or not fields[1].isdigit() or fields[2] == "perf":
            continue
        seconds[category(fields[2], " ".join(fields[3:]))] += int(fields[1]) / RATE
    return seconds


def main() -> int:
    if shutil.which("perf") is None:
        print("cpu_split: perf is not installed", file=sys.stderr)
        return 2
    proctree.become_subreaper()
    bench = Bench()
    bench.skip_components = True
    out_dir = bench.work / "perf"
    result: dict[str, Any] = {"timestamp": bench.stamp, "gib": bench.data_bytes / GiB, "steps": {}}
    bench.setup()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        bucket = bench.new_bucket("cpusplit")
        version = f"split.{bench.stamp}"
        for side in ("out", "in"):
            data = out_dir / f"{side}.data"
            bench.asset_prefix = ["perf", "record", "-q", "-F", str(RATE), "-o", str(data), "--"]
            if side == "out":
                m = bench.project_out(bucket, bench.build, version, "data")
            else:
                m = bench.project_in(bucket, version, len(bench.layout))
            seconds = split(data)
            result["steps"][side] = {
                "cpu_s_per_gib_measured": m.cpu_s / result["gib"],
                "cpu_s_per_gib": sum(seconds.values()) / result["gib"],
                "wall_s": m.wall_s,
                "cpu_s_per_gib_by_category": {k: v / result["gib"] for k, v in seconds.items()},
            }
    finally:
        bench.teardown()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{bench.stamp}-cpusplit.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(render(result)))
    log(f"results: {path}")
    return 0


def render(res: dict[str, Any]) -> list[str]:
    steps = res["steps"]
    lines = [
        f"CPU of one out and one in of {res['gib']:.2f} GiB under perf record, run {res['timestamp']} (CPU s per GiB):",
        "",
        "| where | out | in |",
        "|---|---:|---:|",
    ]
    for _p, _d, label in CATEGORIES:
        row = [steps[s]["cpu_s_per_gib_by_category"].get(label, 0.0) for s in ("out", "in")]
        if any(v >= 0.005 for v in row):
            lines.append(f"| {label} | {row[0]:.2f} | {row[1]:.2f} |")
    lines.append(
        f"| **sampled in all** | **{steps['out']['cpu_s_per_gib']:.2f}** | **{steps['in']['cpu_s_per_gib']:.2f}** |"
    )
    lines.append(
        f"| the step's process tree as the bench measures it (perf included) | "
        f"{steps['out']['cpu_s_per_gib_measured']:.2f} | {steps['in']['cpu_s_per_gib_measured']:.2f} |"
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
