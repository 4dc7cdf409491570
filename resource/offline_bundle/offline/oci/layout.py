"""Saved images as files: a deterministic OCI image layout tar, and reading its one manifest back.

Bundles are compared and signed, so the same image must always give the same archive bytes: members
sorted, mtime 0, owner 0:0. The archive is hashed while it is written, never read again for that.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import IO, Any

from offline_bundle.offline.oci.reference import DIGEST_RE, MANIFEST_TYPES, OCI_INDEX, RegistryError

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
MAX_JSON_BYTES = 4 << 20  # manifests and configs; distribution itself refuses manifests over 4 MiB


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it on its way to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self._target.write(view)
        return len(view)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return doc


def _canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def tar_info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_oci_archive(path: Path, descriptor: dict[str, Any], blobs: Path) -> str:
    """An OCI image layout with one manifest as a deterministic tar; returns its SHA-256.

    Members sorted, mtime 0, owner 0:0, so the same image always gives the same bytes.
    """
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
    with path.open("wb") as raw:
        writer = HashingWriter(raw)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(tar_info("blobs/", 0, directory=True))
            tar.addfile(tar_info("blobs/sha256/", 0, directory=True))
            for blob in sorted(blobs.iterdir()):
                with blob.open("rb") as f:
                    tar.addfile(tar_info(f"blobs/sha256/{blob.name}", blob.stat().st_size), f)
            for name, data in (("index.json", _canonical_json(index)), ("oci-layout", OCI_LAYOUT)):
                tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
        return writer.hash.hexdigest()


def read_oci_archive_manifest(tar: tarfile.TarFile, archive: Path) -> tuple[dict[str, Any], bytes]:
    """The single manifest descriptor of an OCI archive's index.json and the manifest's verified bytes."""

    def member_bytes(name: str) -> bytes:
        try:
            member = tar.getmember(name)
        except KeyError:
            raise RegistryError(f"{archive}: not an OCI archive (no {name})") from None
        if member.size > MAX_JSON_BYTES:
            raise RegistryError(f"{archive}: {name} is too large")
        f = tar.extractfile(member)
        if f is None:
            raise RegistryError(f"{archive}: {name} is not a file")
        return f.read()

    index = json_object(member_bytes("index.json"), f"{archive}: index.json")
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise RegistryError(f"{archive}: index.json lists {len(manifests)} manifests, expected 1")
    descriptor = manifests[0]
    digest = str(descriptor.get("digest", ""))
    if not DIGEST_RE.fullmatch(digest) or descriptor.get("mediaType") not in MANIFEST_TYPES:
        raise RegistryError(f"{archive}: index.json's manifest is not a sha256 image manifest")
    data = member_bytes(f"blobs/sha256/{digest[7:]}")
    if sha256_digest(data) != digest:
        raise RegistryError(f"{archive}: manifest {digest} does not match its digest")
    return descriptor, data
