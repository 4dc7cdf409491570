"""The carrier's side of the security tests: bundles carried on a folder, and proof that nothing leaked.

A carrier holds the medium (a folder) and may write to the air-gapped bucket, but not the signing
key. ``Carry`` makes real bundles (real gpg, real SeaweedFS) and exports them to media; ``leaks``
answers the question the attacks ask: did any of these bytes reach the store — as an object, in an
open multipart upload, or anywhere in the server's files on disk (where the bytes of an upload that
was aborted later still are until SeaweedFS compacts its volumes)?
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli import run_cli, write_yaml
from .concourse import make_source
from .gpgkeys import GpgKeys
from .seaweed import SeaweedServer, new_bucket_name

MiB = 1 << 20
BIG = 11 * MiB + 5  # the large part: its payload is three 5 MiB pieces


def new_bucket(server: SeaweedServer) -> str:
    server.ensure_running()
    name = new_bucket_name()
    server.client().create_bucket(Bucket=name)
    return name


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def needles_of(data: bytes, count: int = 6, width: int = 48) -> list[bytes]:
    """Slices of ``data`` spread over it: finding any of them in a store means its bytes got there."""
    step = max(1, (len(data) - width) // count)
    return [data[i : i + width] for i in range(7, max(8, len(data) - width), step)][:count]


def files_containing(folder: Path, needles: list[bytes]) -> list[str]:
    """Files under ``folder`` holding any needle (read in overlapping blocks, so none is missed at a boundary)."""
    found = []
    overlap = max(len(n) for n in needles)
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError:
                continue
            with f:
                tail = b""
                while block := f.read(8 * MiB):
                    window = tail + block
                    if any(n in window for n in needles):
                        found.append(path)
                        break
                    tail = window[-overlap:]
    return found


def leaks(server: SeaweedServer, bucket: str, needles: list[bytes]) -> list[str]:
    """Everything in ``bucket`` (and on the server's disk) that holds one of ``needles``; [] when clean."""
    client = server.client()
    where = []
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    for page in pages:
        for o in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            if any(n in body for n in needles):
                where.append(f"object {o['Key']}")
    for up in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = client.list_parts(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]).get("Parts", [])
        where.append(f"open upload of {up['Key']} with {len(parts)} part(s)")  # none is expected after a refusal
    where += [f"server file {p}" for p in files_containing(server.data_dir, needles)]
    return where


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit 1, one ``error:`` line, no internal error, no traceback: the line."""
    context = f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode == 1, context
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, context
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, context
    return errors[0]


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    return proc


def copy_medium(medium: Path, to: Path) -> Path:
    shutil.copytree(medium, to, symlinks=True)
    return to


@dataclass
class Carry:
    """A bundle in a near bucket, its configs, and where its files are on a medium."""

    near: SeaweedServer
    bucket: str
    keys: GpgKeys
    folder: Path

    def _config(self, server: SeaweedServer, bucket: str, name: str, **extra: Any) -> Path:
        source = make_source(server, bucket, use_writer_identity=True, **extra)
        path = write_yaml(self.folder / f"{bucket}-{name}.yml", source)
        path.chmod(0o600)
        return path

    def put_config(self) -> Path:
        return self._config(
            self.near,
            self.bucket,
            "put",
            recipient_public_keys=[self.keys.recipient.public_armored],
            signing_private_key=self.keys.signer.secret_armored,
        )

    def reader_config(self, server: SeaweedServer | None = None, bucket: str | None = None) -> Path:
        """What export (near) and import or mirror (far) use: trusts the signer, may write."""
        return self._config(
            server or self.near, bucket or self.bucket, "read", trusted_public_keys=[self.keys.signer.public_armored]
        )

    def pack(self, build: Path, version: str, *, to_dir: Path | None = None) -> None:
        where = ["--to-dir", str(to_dir)] if to_dir is not None else []
        ok(run_cli("pack", "--config", self.put_config(), *where, "--base", build, "--part", "big=big",
                   "--part", "small=small", "--version", version))  # fmt: skip

    def export(self, version: str, medium: Path, *extra: str) -> None:
        ok(run_cli("export", "--config", self.reader_config(), "--to", medium, "--version", version,
                   "--piece-size", "5MiB", *extra))  # fmt: skip

    def verifier_config(self) -> Path:
        """What verify and unpack need: the trusted signer and the decryption key."""
        return self._config(
            self.near,
            self.bucket,
            "verify",
            trusted_public_keys=[self.keys.signer.public_armored],
            decryption_private_key=self.keys.recipient.secret_armored,
        )

    def manifest(self, version: str, folder: Path | None = None) -> dict[str, Any]:
        """The signed manifest of ``version`` in the near bucket (or in a folder in the bucket layout)."""
        if folder is not None:
            body = (folder / "demo" / version / "manifest.json.asc").read_bytes()
        else:
            key = f"demo/{version}/manifest.json.asc"
            body = self.near.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        text = body.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0]
        return json.loads(text)

    def payload(self, version: str, part: str, folder: Path | None = None) -> dict[str, Any]:
        return next(p["payload"] for p in self.manifest(version, folder)["parts"] if p["name"] == part)


def payload_path(medium: Path, key: str) -> Path:
    """Where a payload key lives on a medium (keys may be relative to the bundle's folder)."""
    return medium / (key if key.startswith("demo/") else f"demo/{key}")


def pieces_folder(medium: Path, key: str) -> Path:
    return payload_path(medium, key).with_name(payload_path(medium, key).name + ".pieces")


def index_file(medium: Path, key: str) -> Path:
    return payload_path(medium, key).with_name(payload_path(medium, key).name + ".index.json")


def make_build(folder: Path, small: str, seed: int = 11) -> Path:
    (folder / "big").mkdir(parents=True, exist_ok=True)
    (folder / "big" / "data.bin").write_bytes(random_bytes(BIG, seed))
    (folder / "small").mkdir(parents=True, exist_ok=True)
    (folder / "small" / "notes.txt").write_text(small)
    return folder


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
