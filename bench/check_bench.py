"""`make bench-check`: how long ``check`` takes on a bucket of many versions and junk (docs/benchmarks.md).

``check`` verifies what it lists. This builds, on a local SeaweedFS, a bundle of BENCH_VERSIONS
committed versions (commit objects only, clear-signed with a throwaway key: ``check`` never reads
payloads) plus BENCH_JUNK objects a carrier could add (garbage under non-SemVer names, altered
commit objects with BAD signatures under the newest names, genuine commit objects copied under
other versions' keys), then runs ``assets/check`` as Concourse does: without a version (only the
latest) and with a version in the middle (it and everything after it). Every figure is the
median of BENCH_RUNS runs; the answers with junk must equal the answers without.

Environment knobs: BENCH_VERSIONS=300, BENCH_JUNK=50, BENCH_RUNS=5. The figures also go to
bench/results/<stamp>-check.json, which `make bench-plot` shows in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))

from tests.support.concourse import make_source  # noqa: E402
from tests.support.gpgkeys import generate_keys  # noqa: E402
from tests.support.many_versions import (  # noqa: E402
    add_junk,
    creation_stamps,
    manifest,
    run_check,
    sign_all,
    version_names,
)
from tests.support.seaweed import SeaweedServer, new_bucket_name  # noqa: E402


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


RESULTS = BENCH_DIR / "results"


def main() -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record: dict[str, Any] = {"timestamp": stamp, "kind": "check", "cases": []}
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
            versions = version_names(n_versions)
            stamps = creation_stamps(n_versions)
            empty = make_source(server, bucket, use_readonly_identity=True, trusted_public_keys=[signer.public_armored])
            base = [run_check(empty, None) for _ in range(env_int("BENCH_RUNS", 5))]
            record["cases"].append(
                {
                    "bucket": "empty",
                    "request": "no version",
                    "answer": 0,
                    "wall_s": statistics.median(b.wall_s for b in base),
                    "cpu_s": statistics.median(b.cpu_s for b in base),
                }
            )
            print(
                f"{'empty bucket':<29} median {statistics.median(b.wall_s for b in base):.2f} s, "
                f"CPU {statistics.median(b.cpu_s for b in base):.2f} s (starting Python, boto3, one listing)",
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
                        run = run_check(source, version)
                        times.append(run.wall_s)
                        cpus.append(run.cpu_s)
                        answer, stderr = run.versions, run.stderr
                    warn = [ln for ln in stderr.splitlines() if ln.startswith("warning:")]
                    record["cases"].append(
                        {
                            "bucket": f"{n_versions} versions" + (f" + {n_junk} junk" if label.startswith("+") else ""),
                            "request": "no version" if version is None else version,
                            "answer": len(answer),
                            "warning_lines": len(warn),
                            "wall_s": statistics.median(times),
                            "cpu_s": statistics.median(cpus),
                        }
                    )
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
            add_junk(client, bucket, versions, signed, n_junk)
            dirty = measure(f"+{n_junk} junk")
            same = dirty == clean
            print(f"answers with junk equal answers without: {same}")
            if not same:
                raise SystemExit(1)
            record |= {"versions": n_versions, "junk": n_junk, "runs": runs, "load_before": load, "same": same}
            record["load_after"] = os.getloadavg()[0]
            RESULTS.mkdir(exist_ok=True)
            path = RESULTS / f"{stamp}-check.json"
            path.write_text(json.dumps(record, indent=2) + "\n")
            print(f"results: {path}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
