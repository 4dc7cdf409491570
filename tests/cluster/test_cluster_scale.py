"""Scale on a real SeaweedFS cluster (``make soak`` only): an 8 GiB bundle costs the same memory as a
1 GiB one, and ``in`` writes each byte once.

The cluster for this test keeps one copy of each volume (replication 000): 8 GiB twice over would
only measure the disk. The build file is sparse (written as a hole, read as zeros), so the 8 GiB
are generated on the fly rather than stored before the put; gpg's output is still 8 GiB of
ciphertext through the gateway, and ``in`` still writes 8 GiB.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.cluster.conftest import SOAK
from tests.support.cluster import SeaweedCluster, running_cluster
from tests.support.concourse import asset_env, make_source
from tests.support.gpgkeys import GpgKeys
from tests.support.paths import ASSETS_DIR, REPO_ROOT
from tests.support.seaweed import new_bucket_name

sys.path.insert(0, str(REPO_ROOT / "bench"))
import proctree  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cluster,
    pytest.mark.soak,
    pytest.mark.skipif(not SOAK, reason="8 GiB through a cluster: only under make soak (SOAK=1)"),
]
GiB = 1 << 30


@pytest.fixture(scope="module")
def plain_cluster(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    with running_cluster(tmp_path_factory.mktemp("cluster000"), replication="000", volume_size_mb=1024) as c:
        yield c


def cluster_pids(c: SeaweedCluster) -> set[int]:
    return {comp.proc.pid for comp in c.components if comp.proc is not None}


def measured(asset: str, request: dict, arg: Path, tmp: Path, exclude: set[int]) -> proctree.Measurement:
    home = tmp / f"home-{asset}"
    home.mkdir(exist_ok=True)
    m = proctree.measure(
        [str(ASSETS_DIR / asset), str(arg)],
        env=asset_env(asset, home=home),
        cwd=home,
        stdin=json.dumps(request).encode(),
        stdout=tmp / f"{asset}.out",
        stderr=tmp / f"{asset}.err",
        exclude_pids=exclude,
    )
    assert m.returncode == 0, (tmp / f"{asset}.err").read_text()[-3000:]
    return m


def test_rss_is_flat_from_1_to_8_gib_and_in_writes_each_byte_once(
    plain_cluster: SeaweedCluster, gpg_keys: GpgKeys, tmp_path: Path, figures: dict
) -> None:
    proctree.become_subreaper()
    exclude = cluster_pids(plain_cluster) | {os.getpid()}
    results = {}
    for gib in (1, 8):
        bucket = new_bucket_name()
        plain_cluster.client().create_bucket(Bucket=bucket)
        put_source = make_source(
            plain_cluster,  # type: ignore[arg-type]
            bucket,
            recipient_public_keys=[gpg_keys.recipient.public_armored],
            signing_private_key=gpg_keys.signer.secret_armored,
        )
        get_source = make_source(
            plain_cluster,  # type: ignore[arg-type]
            bucket,
            use_readonly_identity=True,
            trusted_public_keys=[gpg_keys.signer.public_armored],
            decryption_private_key=gpg_keys.recipient.secret_armored,
        )
        work = tmp_path / f"{gib}g"
        (work / "build" / "big").mkdir(parents=True)
        with open(work / "build" / "big" / "payload.bin", "wb") as f:
            f.truncate(gib * GiB)  # sparse: read back as zeros, never stored
        params = {"parts": [{"name": "big", "path": "big"}], "version": "1.0.0"}
        out = measured("out", {"source": put_source, "params": params}, work / "build", work, exclude)
        dest = work / "dest"
        dest.mkdir()
        get = measured("in", {"source": get_source, "version": {"version": "1.0.0"}}, dest, work, exclude)
        assert (dest / "big" / "payload.bin").stat().st_size == gib * GiB
        results[gib] = {
            "out_wall_s": round(out.wall_s, 1),
            "out_peak_rss_mb": round(out.peak_rss_bytes / 1e6),
            "in_wall_s": round(get.wall_s, 1),
            "in_peak_rss_mb": round(get.peak_rss_bytes / 1e6),
            "in_disk_write_ratio": round(get.disk_write_bytes / (gib * GiB), 3),
        }
        (dest / "big" / "payload.bin").unlink()  # spare the disk for the next size
    figures["scale_8gib"] = results
    for side in ("out", "in"):
        small, large = results[1][f"{side}_peak_rss_mb"], results[8][f"{side}_peak_rss_mb"]
        assert large <= small * 1.25 + 10, f"{side}: peak RSS {small} MB at 1 GiB, {large} MB at 8 GiB"
    assert 0.99 <= results[8]["in_disk_write_ratio"] <= 1.05, results[8]
