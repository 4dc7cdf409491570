"""`make bench-check`: how long ``check`` takes on a bucket of many versions and junk (docs/benchmarks.md).

``check`` verifies what it lists. This builds, on a local SeaweedFS, a bundle of BENCH_VERSIONS
committed versions (commit objects only, clear-signed with a throwaway key: ``check`` never reads
payloads) plus BENCH_JUNK objects a carrier could add (garbage under non-SemVer names, altered
commit objects with BAD signatures under the newest names, genuine commit objects copied under
other versions' keys), then runs ``assets/check`` as Concourse does: without a version (only the
latest) and with a version in the middle (it and everything after it). Every figure is the
median of BENCH_RUNS runs; the answers with junk must equal the answers without.

Environment knobs: BENCH_VERSIONS=300, BENCH_JUNK=50, BENCH_RUNS=5.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))

from tests.support.concourse import ASSETS_DIR, asset_env, make_source  # noqa: E402
from tests.support.gpgkeys import generate_keys, import_keys, temporary_gnupghome  # noqa: E402
from tests.support.seaweed import SeaweedServer, new_bucket_name  # noqa: E402


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def manifest(version: str, created_at: str) -> bytes:
    """A manifest with one small part, written by the project's own writer."""
    from offline_bundle.core.manifest import Encryption, FileEntry, Manifest, Part, Payload, parse_manifest

    entry = FileEntry("a.txt", "file", 0o644, 0, 1, "0" * 64)
    part = Part("a", "a/", Payload("_blobs/" + "0" * 32, 10240, "0" * 64), Encryption(), (entry,))
    body = Manifest("demo", version, created_at, (part,)).to_json_bytes()
    parse_manifest(body)  # the reader accepts it: a bench of check on manifests no get reads would mislead
    return body


def sign_all(secret: str, fingerprint: str, bodies: list[bytes]) -> list[bytes]:
    with temporary_gnupghome() as home:
        import_keys(home, secret)
        out = []
        for body in bodies:
            proc = subprocess.run(
                ["gpg", "--homedir", str(home), "--batch", "--local-user", fingerprint]
                + ["--digest-algo", "SHA256", "--clearsign"],
                input=body,
                capture_output=True,
                check=True,
            )
            out.append(proc.stdout)
        return out


def run_check(source: dict[str, Any], version: str | None) -> tuple[float, float, list[str], str]:
    """Wall time, CPU time of the whole process tree (python and every gpg), answer, stderr."""
    req: dict[str, Any] = {"source": source}
    if version is not None:
        req["version"] = {"version": version}
    with tempfile.TemporaryDirectory() as home:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(ASSETS_DIR / "check")],
            input=json.dumps(req).encode(),
            capture_output=True,
            env=asset_env("check", home=Path(home)),
            check=False,
        )
        took = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"check failed: {proc.stderr.decode()}")
    return took, cpu, [v["version"] for v in json.loads(proc.stdout)], proc.stderr.decode()


def main() -> None:
    n_versions = env_int("BENCH_VERSIONS", 300)
    n_junk = env_int("BENCH_JUNK", 50)
    runs = env_int("BENCH_RUNS", 5)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="check-bench-") as work:
        server = SeaweedServer.create(Path(work) / "seaweed")
        server.start()
        try:
            bucket = new_bucket_name()
            client = server.client()
            client.create_bucket(Bucket=bucket)
            signer = generate_keys().signer
            versions = [f"{1 + i // 100}.{(i // 10) % 10}.{i % 10}" for i in range(n_versions)]
            stamps = [f"2026-01-01T{i // 3600:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z" for i in range(n_versions)]
            empty = make_source(server, bucket, use_readonly_identity=True, trusted_public_keys=[signer.public_armored])
            base = [run_check(empty, None)[:2] for _ in range(env_int("BENCH_RUNS", 5))]
            print(
                f"{'empty bucket':<29} median {statistics.median(b[0] for b in base):.2f} s, "
                f"CPU {statistics.median(b[1] for b in base):.2f} s (starting Python, boto3, one listing)",
                flush=True,
            )
            t0 = time.monotonic()
            signed = sign_all(
                signer.secret_armored,
                signer.fingerprint,
                [manifest(v, s) for v, s in zip(versions, stamps, strict=True)],
            )
            print(f"signed {n_versions} commit objects in {time.monotonic() - t0:.1f} s", flush=True)
            order = list(range(n_versions))
            rng.shuffle(order)  # upload order is not version order
            for i in order:
                client.put_object(Bucket=bucket, Key=f"demo/{versions[i]}/manifest.json.asc", Body=signed[i])
            source = make_source(
                server, bucket, use_readonly_identity=True, trusted_public_keys=[signer.public_armored]
            )
            mid = versions[n_versions // 2]
            cases = [("latest", None), (f"from {mid}", mid)]

            def measure(label: str) -> dict[str, list[str]]:
                answers = {}
                for name, version in cases:
                    times, cpus = [], []
                    for _ in range(runs):
                        took, cpu, answer, stderr = run_check(source, version)
                        times.append(took)
                        cpus.append(cpu)
                    warn = [ln for ln in stderr.splitlines() if ln.startswith("warning:")]
                    print(
                        f"{label:<14} {name:<14} median {statistics.median(times):.2f} s "
                        f"(min {min(times):.2f}, max {max(times):.2f}; {runs} runs), "
                        f"CPU {statistics.median(cpus):.2f} s; "
                        f"{len(answer)} version(s), newest {answer[-1]}; warning lines: {len(warn)}",
                        flush=True,
                    )
                    answers[name] = answer
                return answers

            load = os.getloadavg()[0]
            print(f"{os.cpu_count()} CPUs, load average {load:.1f} (wall times grow with it; CPU times do not)")
            clean = measure("no junk")
            top = versions[-1].split(".")
            for j in range(n_junk):
                kind = j % 3
                if kind == 0:
                    client.put_object(Bucket=bucket, Key=f"demo/junk-{j}/manifest.json.asc", Body=os.urandom(200))
                elif kind == 1:  # altered commit object: BAD signature, under a name newer than any version
                    forged = signed[-1].replace(versions[-1].encode(), f"{int(top[0]) + 1}.0.{j}".encode())
                    client.put_object(Bucket=bucket, Key=f"demo/{int(top[0]) + 1}.0.{j}/manifest.json.asc", Body=forged)
                else:  # a genuine old commit object copied under a newer key (a replay)
                    key = f"demo/{int(top[0]) + 2}.0.{j}/manifest.json.asc"
                    client.put_object(Bucket=bucket, Key=key, Body=signed[0])
            dirty = measure(f"+{n_junk} junk")
            same = dirty == clean
            print(f"answers with junk equal answers without: {same}")
            if not same:
                raise SystemExit(1)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
