"""Fixtures for the tests on a real SeaweedFS cluster (master, three volume servers, filer, S3 gateway).

Sizes: the short form runs inside ``make test`` (CI); ``make soak`` sets SOAK=1 for the full sizes
of the issue (1 GiB transfers, 20 cuts, 8 GiB) and SOAK_RESULTS=<file> to keep the figures, which
``bench/soak_report.py`` writes into docs/operations.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import SeaweedCluster
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import new_bucket_name
from tests.support.sides import Sides

SOAK = os.environ.get("SOAK", "") not in ("", "0")
MiB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    transfer: int  # bytes of the bundle moved in the fault tests
    cuts: int  # connections cut during one transfer
    concurrent: int  # bytes of each bundle in the concurrency tests


SIZES = Sizes(transfer=1024 * MiB, cuts=20, concurrent=64 * MiB) if SOAK else Sizes(64 * MiB, 5, 8 * MiB)


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return SIZES


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedCluster]:
    """Replication 001: every volume on two of the three volume servers, so one may die."""
    c = SeaweedCluster.create(tmp_path_factory.mktemp("cluster"), replication="001")
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def csides(cluster: SeaweedCluster, gpg_keys: GpgKeys, tmp_path: Path) -> Sides:
    """Two sides over a fresh bucket of the cluster; whatever an earlier test killed is back up."""
    cluster.ensure_running()
    bucket = new_bucket_name()
    cluster.client().create_bucket(Bucket=bucket)
    return Sides.create(cluster, bucket, gpg_keys, tmp_path)  # type: ignore[arg-type]


def make_payload(folder: Path, size: int, seed: int = 0) -> str:
    """A file of ``size`` bytes in ``folder`` (distinct blocks: no compression, no dedupe); its SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    with open(folder / "payload.bin", "wb") as f:
        for i in range(size // MiB):
            chunk = block[:-8] + i.to_bytes(8, "big")
            h.update(chunk)
            f.write(chunk)
        rest = size % MiB
        if rest:
            h.update(block[:rest])
            f.write(block[:rest])
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, Any]]:
    """What the tests measured, by test; kept in SOAK_RESULTS when set."""
    found: dict[str, Any] = {"soak": SOAK, "sizes": asdict(SIZES)}
    yield found
    path = os.environ.get("SOAK_RESULTS")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
