"""``publish-images``: the OCI archives of an unpacked bundle pushed to the air-gapped registry.

Each archive names its own origin (an annotation ``save`` wrote), so the target repository is derived
from the archive alone and needs no lock on the far side.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from offline_bundle.core.log import Log
from offline_bundle.errors import ConfigError
from offline_bundle.offline.oci.layout import read_oci_archive_manifest
from offline_bundle.offline.oci.reference import (
    DIGEST_RE,
    REF_NAME,
    REPOSITORY_ANNOTATION,
    REPOSITORY_RE,
    TAG_RE,
    ImageRef,
    RegistryError,
    parse_image_ref,
    split_registry,
)
from offline_bundle.offline.oci.registry import RegistryClient


def _is_saved_archive(path: Path) -> bool:
    """``*.oci.tar``, or any ``*.tar`` that starts as ``save`` writes one (a ``blobs/`` folder first).

    The second form lets a bundle carry archives under other names (``image.tar``) without opening
    every other tar of the bundle: only its first 512-byte header is read.
    """
    if path.name.endswith(".oci.tar"):
        return True
    try:
        with path.open("rb") as f:
            header = f.read(512)
    except OSError:
        return False
    return len(header) == 512 and header[:100].rstrip(b"\0") == b"blobs/"


def publish_images(exploded_dir: Path, registry: str, *, client: RegistryClient, log: Log) -> list[tuple[str, str]]:
    """Push every OCI archive ``save`` wrote under ``exploded_dir`` to ``registry`` (``HOST[:PORT]/PREFIX``).

    Archives are ``*.oci.tar`` files and other ``*.tar`` files that begin like one (see
    ``_is_saved_archive``).

    Each goes to ``<registry>/<its original repository path>``, by digest and by its tag when it has
    one. Returns (target reference, digest) for each archive, in path order.
    """
    host, prefix = split_registry(registry)
    archives = sorted(p for p in exploded_dir.rglob("*.tar") if p.is_file() and _is_saved_archive(p))
    if not archives:
        log(f"publish-images: no OCI archive under {exploded_dir}")
    pushed: list[tuple[str, str]] = []
    for archive in archives:
        with tarfile.open(archive, "r:") as tar:
            descriptor, _ = read_oci_archive_manifest(tar, archive)
        annotations = descriptor.get("annotations") or {}
        original = annotations.get(REPOSITORY_ANNOTATION)
        if not original:
            raise RegistryError(f"{archive}: index.json has no {REPOSITORY_ANNOTATION} annotation")
        source = parse_image_ref(original + "@" + descriptor["digest"])
        repository = f"{prefix}/{source.repository}" if prefix else source.repository
        name = str(annotations.get(REF_NAME, ""))
        tag = name if name and TAG_RE.fullmatch(name) and not DIGEST_RE.fullmatch(name) else None
        target = ImageRef(registry=host, repository=repository, tag=tag, digest=descriptor["digest"])
        if not REPOSITORY_RE.fullmatch(repository):
            raise ConfigError(f"{archive}: target repository {repository!r} is not valid")
        log(f"publish-images: {archive.name} -> {target}")
        digest = client.push(archive, target)
        pushed.append((str(target), digest))
    return pushed
