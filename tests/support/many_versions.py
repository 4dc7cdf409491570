"""Many committed versions of one bundle, fast: clear-signed commit objects without payloads.

``check`` reads only commit objects (it never opens a payload), so a bucket of hundreds of versions
for measuring it needs only their signed manifests, made by the project's own writer and accepted
by its own reader. Used by ``make bench-check`` (one SeaweedFS) and the cluster's check test.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_bundle.core.manifest import Encryption, FileEntry, Manifest, Part, Payload, parse_manifest
from tests.support.concourse import ASSETS_DIR, asset_env
from tests.support.gpgkeys import import_keys, temporary_gnupghome


def version_names(n: int) -> list[str]:
    """``1.0.0`` … in SemVer order, ten patch levels per minor, ten minors per major."""
    return [f"{1 + i // 100}.{(i // 10) % 10}.{i % 10}" for i in range(n)]


def creation_stamps(n: int) -> list[str]:
    """One second apart, in the same order as :func:`version_names`."""
    return [f"2026-01-01T{i // 3600:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z" for i in range(n)]


def manifest(version: str, created_at: str, name: str = "demo") -> bytes:
    """A manifest with one small part, written by the project's own writer."""
    entry = FileEntry("a.txt", "file", 0o644, 0, 1, "0" * 64)
    part = Part("a", "a/", Payload("_blobs/" + "0" * 32, 10240, "0" * 64), Encryption(), (entry,))
    body = Manifest(name, version, created_at, (part,)).to_json_bytes()
    parse_manifest(body)  # the reader accepts it: a check over manifests no get reads would mislead
    return body


def sign_all(secret: str, fingerprint: str, bodies: list[bytes]) -> list[bytes]:
    """Each body clear-signed (SHA-256) as ``out`` signs a commit object."""
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


def upload_commits(client: Any, bucket: str, versions: list[str], signed: list[bytes], prefix: str = "demo/") -> None:
    for version, body in zip(versions, signed, strict=True):
        client.put_object(Bucket=bucket, Key=f"{prefix}{version}/manifest.json.asc", Body=body)


@dataclass(frozen=True)
class CheckRun:
    wall_s: float
    cpu_s: float  # the whole process tree: python and every gpg
    versions: list[str]
    stderr: str


def run_check(source: dict[str, Any], version: str | None) -> CheckRun:
    """``assets/check`` as Concourse runs it."""
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
        raise AssertionError(f"check failed: {proc.stderr.decode()}")
    return CheckRun(took, cpu, [v["version"] for v in json.loads(proc.stdout)], proc.stderr.decode())


def add_junk(client: Any, bucket: str, versions: list[str], signed: list[bytes], n: int) -> None:
    """What a carrier could add: garbage under non-SemVer names, altered commit objects (BAD
    signatures) under names newer than any version, genuine ones copied under newer keys (replays)."""
    top = int(versions[-1].split(".")[0])
    for j in range(n):
        kind = j % 3
        if kind == 0:
            client.put_object(Bucket=bucket, Key=f"demo/junk-{j}/manifest.json.asc", Body=os.urandom(200))
        elif kind == 1:
            forged = signed[-1].replace(versions[-1].encode(), f"{top + 1}.0.{j}".encode())
            client.put_object(Bucket=bucket, Key=f"demo/{top + 1}.0.{j}/manifest.json.asc", Body=forged)
        else:
            client.put_object(Bucket=bucket, Key=f"demo/{top + 2}.0.{j}/manifest.json.asc", Body=signed[0])
