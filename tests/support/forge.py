"""Hand-made bundles: what a forger or a buggy packer could commit, signed with a trusted key.

Used to prove that the get side's own checks (archive, manifest, hashes) stand between a bad
bundle and the disk even when the signature is good.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
from dataclasses import dataclass, field
from typing import Any

from .gpgkeys import TestKey, clearsign, encrypt_for


@dataclass
class ForgedPart:
    name: str
    tar: bytes
    files: list[dict[str, Any]]
    destination: str | None = None


@dataclass
class Member:
    """One tar member: a TarInfo and its data (None for non-files)."""

    info: tarfile.TarInfo
    data: bytes | None = None
    raw_name: bytes | None = None  # a name that is not valid UTF-8, written as raw header bytes


def tar_of(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tf:
        for m in members:
            if m.raw_name is not None:
                m.info.name = m.raw_name.decode("utf-8", "surrogateescape")
            tf.addfile(m.info, io.BytesIO(m.data) if m.data is not None else None)
    return buf.getvalue()


def file_member(name: str, data: bytes, mode: int = 0o644) -> Member:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    return Member(ti, data)


def node_member(name: str, kind: bytes, linkname: str = "") -> Member:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return Member(ti)


def file_entry(path: str, data: bytes, mode: int = 0o644) -> dict[str, Any]:
    return {
        "path": path,
        "type": "file",
        "mode": f"{mode:04o}",
        "mtime": 0,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@dataclass
class Forger:
    """Writes forged bundles into ``bucket`` under bundle ``name`` with a boto3 ``client``."""

    client: Any
    bucket: str
    signer: TestKey
    recipient: TestKey
    name: str = "demo"
    written: list[str] = field(default_factory=list)

    def payload(self, data: bytes) -> dict[str, Any]:
        """Upload a sealed payload as a put does; the manifest names it relative to the bundle's folder."""
        sealed = encrypt_for(data, [self.recipient])
        digest = hashlib.sha256(sealed).hexdigest()
        key = f"_blobs/{secrets.token_hex(16)}"
        self.client.put_object(Bucket=self.bucket, Key=f"{self.name}/{key}", Body=sealed)
        self.written.append(f"{self.name}/{key}")
        return {"key": key, "size": len(sealed), "sha256": digest}

    def manifest(
        self, version: str, parts: list[ForgedPart], overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format_version": 1,
            "name": self.name,
            "version": version,
            "created_at": "2026-11-25T00:00:00Z",
            "tool": {"name": "forger", "version": "0"},
            "parts": [
                {
                    "name": p.name,
                    "destination": p.destination or p.name + "/",
                    "payload": self.payload(p.tar),
                    "encryption": {
                        "recipients": [self.recipient.fingerprint],
                        "passphrase": False,
                        "compression": "none",
                    },
                    "files": p.files,
                }
                for p in parts
            ],
        }
        doc.update(overrides or {})
        return doc

    def commit(self, version: str, manifest: dict[str, Any], signer: TestKey | None = None) -> bytes:
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        signed = clearsign(signer or self.signer, body)
        self.client.put_object(Bucket=self.bucket, Key=f"{self.name}/{version}/manifest.json.asc", Body=signed)
        return signed

    def bundle(self, version: str, parts: list[ForgedPart], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        manifest = self.manifest(version, parts, overrides)
        self.commit(version, manifest)
        return manifest
