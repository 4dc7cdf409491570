"""What each piece of `out` and `in` costs alone, per GiB and per core, and the model built on it.

`out` and `in` are pipelines: tar → SHA-256 → gpg → SHA-256 → upload, and back. On two cores every
piece competes with every other (and with the store), so the end-to-end runs cannot say where the
bound lies on a larger worker. Each piece is timed here alone, on one core, on data in memory, in
CPU seconds per GiB (getrusage of this process and its children): then a worker with more cores
and a faster store is a matter of arithmetic, written out in `model()`.

Run alone: `.venv/bin/python bench/components.py [MiB]` prints the figures as JSON; `bench/run.py`
runs it after the rounds (results under "components"); `bench/plot.py` puts them in
docs/benchmarks.md with the model, which also needs the newest `bench/cpu_split.py` result.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "resource"))

from offline_bundle.openpgp.gpg import CIPHER_ARGS, COMMON_ARGS  # noqa: E402
from offline_bundle.openpgp.stream import DecryptKeys, decrypt_stream, encrypt_stream  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
CHUNK = MiB


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _per_gib(fn: Callable[[], None], nbytes: int, repeat: int = 3) -> float:
    """CPU seconds per GiB of ``fn`` (the smallest of ``repeat`` runs: the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = _cpu()
        fn()
        best = min(best, _cpu() - t0)
    return best * GiB / nbytes


def sha256_cost(data: bytes) -> float:
    def run() -> None:
        h = hashlib.sha256()
        view = memoryview(data)
        for off in range(0, len(data), CHUNK):
            h.update(view[off : off + CHUNK])

    return _per_gib(run, len(data))


def pipe_copy_cost(data: bytes) -> float:
    """Bytes written into a pipe by one thread and read out by another, 1 MiB at a time: what each
    hand-over between Python and gpg costs (two kernel copies, a wake-up)."""

    def run() -> None:
        r, w = os.pipe()

        def feed() -> None:
            view = memoryview(data)
            for off in range(0, len(data), CHUNK):
                chunk = view[off : off + CHUNK]
                while chunk:
                    chunk = chunk[os.write(w, chunk) :]
            os.close(w)

        t = threading.Thread(target=feed)
        t.start()
        while os.read(r, CHUNK):
            pass
        t.join()
        os.close(r)

    return _per_gib(run, len(data))


def python_copy_cost(data: bytes) -> float:
    """One copy of every byte in Python (a bytes slice of 64 KiB, as tarfile's reader makes)."""

    def run() -> None:
        view = memoryview(data)
        for off in range(0, len(data), 64 << 10):
            bytes(view[off : off + (64 << 10)])

    return _per_gib(run, len(data))


def _gpg(home: str, *args: str) -> list[str]:
    return ["gpg", "--homedir", home, "--batch", "--quiet", *COMMON_ARGS, *args]


def _keys(home: str) -> str:
    """A throwaway encryption key in ``home``; its fingerprint."""
    subprocess.run(
        _gpg(home, "--passphrase", "", "--quick-gen-key", "bench-components", "rsa3072", "encr", "1d"),
        check=True,
        capture_output=True,
    )
    out = subprocess.run(_gpg(home, "--with-colons", "--list-keys"), check=True, capture_output=True, text=True)
    return next(ln.split(":")[9] for ln in out.stdout.splitlines() if ln.startswith("fpr:"))


def gpg_costs(data_file: Path, nbytes: int, work: Path) -> dict[str, float]:
    """gpg alone (file in, /dev/null out) and through the project's streams (python-gnupg)."""
    home = tempfile.mkdtemp(prefix="obc-", dir="/tmp")  # short: gpg-agent's socket path
    try:
        fpr = _keys(home)
        secret = subprocess.run(
            _gpg(home, "--armor", "--export-secret-keys", fpr), check=True, capture_output=True, text=True
        ).stdout
        enc = work / "payload.gpg"
        encrypt = _gpg(home, *CIPHER_ARGS, "--compress-algo", "none", "-z", "0", "--encrypt", "-r", fpr)
        subprocess.run([*encrypt, "-o", str(enc), str(data_file)], check=True)
        result = {
            "gpg_encrypt": _per_gib(
                lambda: subprocess.run([*encrypt, "-o", "/dev/null", "--yes", str(data_file)], check=True), nbytes
            ),
            "gpg_decrypt": _per_gib(
                lambda: subprocess.run(
                    [*_gpg(home, "--pinentry-mode", "loopback"), "-o", "/dev/null", "--yes", "--decrypt", str(enc)],
                    check=True,
                    capture_output=True,
                ),
                nbytes,
            ),
        }
        public = subprocess.run(_gpg(home, "--armor", "--export", fpr), check=True, capture_output=True, text=True)

        def stream_encrypt() -> None:
            with open(data_file, "rb", buffering=0) as src:
                encrypt_stream(src, lambda _c: None, recipients=(public.stdout,), passphrase=None, compression="none")

        def stream_decrypt() -> None:
            with open(enc, "rb", buffering=0) as src:
                decrypt_stream(src, lambda _c: None, DecryptKeys(secret_key=secret), use_key=True)

        result["stream_encrypt"] = _per_gib(stream_encrypt, nbytes)
        result["stream_decrypt"] = _per_gib(stream_decrypt, nbytes)
        return result
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", home], check=False)


def measure(mib: int = 512, work: Path | None = None) -> dict[str, Any]:
    """Every piece on ``mib`` MiB of random bytes held in memory (and on tmpfs-or-disk for gpg)."""
    data = os.urandom(mib * MiB)
    with tempfile.TemporaryDirectory(prefix="obc-", dir=str(work) if work else None) as tmp:
        data_file = Path(tmp) / "data.bin"
        data_file.write_bytes(data)
        t0 = time.monotonic()
        costs: dict[str, float] = {
            "sha256": sha256_cost(data),
            "pipe_copy": pipe_copy_cost(data),
            "python_copy": python_copy_cost(data),
        }
        costs.update(gpg_costs(data_file, len(data), Path(tmp)))
    return {"mib": mib, "cpu_s_per_gib": costs, "elapsed_s": time.monotonic() - t0}


def model(split: dict[str, Any], *, cores: int = 16, wire_gbit: float = 10.0, parts: int = 4) -> dict[str, Any]:
    """Where `out` and `in` would be bound on a worker of ``cores`` cores and a ``wire_gbit`` store.

    ``split`` is a cpu_split.py result: CPU seconds per GiB of one step, by process and library.
    Four bounds per step, each in GiB/s:
    - one part's gpg is one process on one core, its pipes included: ``1 / gpg's CPU per GiB``, and
      ``parts`` times that with parts side by side;
    - Python's lock: the interpreter and libc (copies, allocation) run holding it, whatever the
      number of parts and cores (SHA-256 and system calls release it), so one process cannot go
      faster than ``1 / their CPU per GiB`` (an upper estimate: some libc time runs without it);
    - the whole step's CPU spread over the cores: ``cores / CPU per GiB``;
    - the wire: ``wire_gbit`` Gbit/s.
    """
    wire = wire_gbit * 1e9 / 8 / GiB
    out: dict[str, Any] = {"cores": cores, "wire_gbit": wire_gbit, "wire_gib_s": wire, "parts": parts}
    for side, step in split["steps"].items():
        cats = step["cpu_s_per_gib_by_category"]
        gpg = sum(v for k, v in cats.items() if k.startswith("gpg:"))
        locked = sum(v for k, v in cats.items() if "interpreter" in k or "copies and allocation" in k)
        bounds = {
            "gpg_one_part": 1 / gpg,
            "gpg_parts": parts / gpg,
            "python_lock": 1 / locked,
            "cpu_all_cores": cores / step["cpu_s_per_gib"],
            "wire": wire,
        }
        one = {k: v for k, v in bounds.items() if k != "gpg_parts"}
        many = {k: v for k, v in bounds.items() if k != "gpg_one_part"}
        out[side] = {
            "bounds_gib_s": bounds,
            "one_part_bound": min(one.values()),
            "one_part_by": min(one, key=lambda k: one[k]),
            "parts_bound": min(many.values()),
            "parts_by": min(many, key=lambda k: many[k]),
        }
    return out


def main() -> int:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    work = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    json.dump(measure(mib, work), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())


NAMES = {
    "sha256": "SHA-256 (hashlib, 1 MiB updates)",
    "pipe_copy": "a pipe between two threads (write, read: 1 MiB)",
    "python_copy": "one copy in Python (64 KiB bytes slices)",
    "gpg_encrypt": "gpg --encrypt alone (file in, /dev/null out)",
    "gpg_decrypt": "gpg --decrypt alone",
    "stream_encrypt": "encrypt through the project's stream (python-gnupg, pipes)",
    "stream_decrypt": "decrypt through the project's stream",
}


def render(res: dict[str, Any], mdl: dict[str, Any] | None) -> list[str]:
    """Markdown lines: the pieces' costs, then the model's bounds."""
    costs = res["cpu_s_per_gib"]
    lines = [
        f"Each piece alone on {res['mib']} MiB in memory, one core (CPU s per GiB, the least of 3 runs):",
        "",
        "| piece | CPU s/GiB | GiB/s on one core |",
        "|---|---:|---:|",
    ]
    lines += [f"| {NAMES.get(k, k)} | {v:.2f} | {1 / v:.2f} |" for k, v in costs.items() if v > 0]
    return lines if mdl is None else [*lines, "", *render_model(mdl)]


def render_model(mdl: dict[str, Any]) -> list[str]:
    """Markdown lines: the model's bounds per step, one part and ``parts`` parts."""
    by = {
        "gpg_one_part": "gpg",
        "python_lock": "Python's lock",
        "cpu_all_cores": "all cores",
        "wire": "the wire",
        "gpg_parts": "gpg",
    }
    lines = [
        f"Model of a {mdl['cores']}-core worker with a {mdl['wire_gbit']:g} Gbit/s store "
        f"({mdl['wire_gib_s']:.2f} GiB/s), from the CPU split of one out and one in here (GiB/s):",
        "",
        f"| step | one part's gpg | {mdl['parts']} parts' gpg | Python's lock | all CPU over {mdl['cores']} cores "
        f"| wire | bound, one part | bound, {mdl['parts']} parts |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for side in ("out", "in"):
        m = mdl[side]
        b = m["bounds_gib_s"]
        lines.append(
            f"| {side} | {b['gpg_one_part']:.2f} | {b['gpg_parts']:.2f} | {b['python_lock']:.2f} | "
            f"{b['cpu_all_cores']:.2f} | {b['wire']:.2f} | {m['one_part_bound']:.2f} ({by[m['one_part_by']]}) | "
            f"{m['parts_bound']:.2f} ({by[m['parts_by']]}) |"
        )
    return lines
