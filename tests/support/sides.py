"""Helpers for two sides of a transfer over one real SeaweedFS bucket and real gpg keys.

``Sides.put_source`` is the connected side (encrypts to the recipient, signs with the signer);
``Sides.get_source`` is the air-gapped side (trusts the signer, holds the decryption key). Tests
drive ``assets/out``, ``assets/check`` and ``assets/in`` as Concourse does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.concourse import make_source, parse_stdout, run_asset
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import SeaweedServer


@dataclass
class Sides:
    server: SeaweedServer
    bucket: str
    keys: GpgKeys
    put_source: dict[str, Any]
    get_source: dict[str, Any]
    tmp: Path
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @classmethod
    def create(cls, server: SeaweedServer, bucket: str, keys: GpgKeys, tmp: Path) -> Sides:
        """Each side with the least privileges docs/operations.md documents: the put side can read, list and
        write objects (no admin, no bucket creation); the get side can only read and list."""
        put_source = make_source(
            server,
            bucket,
            use_writer_identity=True,
            recipient_public_keys=[keys.recipient.public_armored],
            signing_private_key=keys.signer.secret_armored,
        )
        get_source = make_source(
            server,
            bucket,
            use_readonly_identity=True,
            trusted_public_keys=[keys.signer.public_armored],
            decryption_private_key=keys.recipient.secret_armored,
        )
        return cls(server, bucket, keys, put_source, get_source, tmp)

    def client(self) -> Any:
        return self.server.client()

    def out(self, build_dir: Path, params: dict[str, Any], source: dict[str, Any] | None = None, **kw: Any):
        proc = run_asset("out", {"source": source or self.put_source, "params": params}, build_dir, **kw)
        self.runs.append(proc)
        return proc

    def put(self, build_dir: Path, params: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return parse_stdout(self.out(build_dir, params, **kw))

    @staticmethod
    def parse(proc: subprocess.CompletedProcess[str]) -> Any:
        return parse_stdout(proc)

    def check(self, version: str | None = None, source: dict[str, Any] | None = None) -> list[str]:
        req: dict[str, Any] = {"source": source or self.get_source}
        if version is not None:
            req["version"] = {"version": version}
        proc = run_asset("check", req)
        self.runs.append(proc)
        return [v["version"] for v in parse_stdout(proc)]

    def in_(
        self,
        version: str,
        dest: Path,
        params: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        **kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        dest.mkdir(parents=True, exist_ok=True)
        req: dict[str, Any] = {"source": source or self.get_source, "version": {"version": version}}
        if params is not None:
            req["params"] = params
        proc = run_asset("in", req, dest, **kw)
        self.runs.append(proc)
        return proc

    def get(self, version: str, dest: Path, **kw: Any) -> dict[str, Any]:
        return parse_stdout(self.in_(version, dest, **kw))

    def keys_under(self, prefix: str = "demo/") -> list[str]:
        resp = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def blobs(self) -> list[str]:
        return [k for k in self.keys_under("demo/_blobs/")]


def meta(answer: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["value"] for m in answer["metadata"]}


def small_tree(root: Path, **files: str) -> Path:
    """A build folder with one folder per part: ``small_tree(p, a="x", b="y")``."""
    for part, text in files.items():
        (root / part).mkdir(parents=True, exist_ok=True)
        (root / part / f"{part}.txt").write_text(text)
    return root


def assert_clean_failure(proc: subprocess.CompletedProcess[str], words: str, dest: Path | None = None) -> None:
    """Non-zero, nothing on stdout, one clear error line naming ``words``, no traceback, nothing left."""
    context = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert proc.returncode != 0, context
    assert proc.stdout.strip() == "", context
    assert "Traceback" not in proc.stderr, context
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, context
    assert words.lower() in errors[0].lower(), context
    if dest is not None:
        assert os.listdir(dest) == [], f"destination not empty: {os.listdir(dest)}\n{context}"


Tree = Callable[[Path], Path]
