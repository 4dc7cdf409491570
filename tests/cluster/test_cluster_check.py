"""``check`` over 300 versions (60 inside ``make test``) of one bundle on the cluster, with what a
carrier could add among them.

What must hold: ``check`` answers the latest version alone, and from a version in the middle that
version and every later one, in order; the junk (garbage, altered commit objects under newer names,
genuine commit objects replayed under newer keys) changes neither answer. The time is a figure for
docs/operations.md (``make soak``), not an assertion: the target is under 2 s on a quiet machine.
"""

from __future__ import annotations

import statistics

import pytest

from tests.cluster.conftest import SOAK
from tests.support.cluster import SeaweedCluster
from tests.support.concourse import make_source
from tests.support.gpgkeys import GpgKeys
from tests.support.many_versions import (
    add_junk,
    creation_stamps,
    manifest,
    run_check,
    sign_all,
    upload_commits,
    version_names,
)
from tests.support.seaweed import new_bucket_name

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

VERSIONS = 300 if SOAK else 60  # make test runs the short size; make soak the one of the figures
JUNK = 50 if SOAK else 12
RUNS = 3 if SOAK else 1


def test_check_over_many_versions_and_junk(cluster: SeaweedCluster, gpg_keys: GpgKeys, figures: dict) -> None:
    cluster.ensure_running()
    bucket = new_bucket_name()
    client = cluster.client()
    client.create_bucket(Bucket=bucket)
    versions = version_names(VERSIONS)
    bodies = [manifest(v, s) for v, s in zip(versions, creation_stamps(VERSIONS), strict=True)]
    signed = sign_all(gpg_keys.signer.secret_armored, gpg_keys.signer.fingerprint, bodies)
    upload_commits(client, bucket, list(reversed(versions)), list(reversed(signed)))  # not in version order
    source = make_source(
        cluster,  # type: ignore[arg-type]
        bucket,
        use_readonly_identity=True,
        trusted_public_keys=[gpg_keys.signer.public_armored],
    )
    mid = versions[VERSIONS // 2]

    def answers() -> tuple[dict[str, list[str]], dict[str, float]]:
        found, times = {}, {}
        for label, version in (("latest", None), ("from_middle", mid)):
            runs = [run_check(source, version) for _ in range(RUNS)]
            assert all(r.versions == runs[0].versions for r in runs), "check answered differently on a rerun"
            found[label], times[label] = runs[0].versions, statistics.median(r.wall_s for r in runs)
        return found, times

    clean, clean_s = answers()
    assert clean["latest"] == [versions[-1]]
    assert clean["from_middle"] == versions[VERSIONS // 2 :]

    add_junk(client, bucket, versions, signed, JUNK)
    dirty, dirty_s = answers()
    assert dirty == clean, "objects a carrier added changed what check lists"
    figures["check_300_versions"] = {
        "versions": VERSIONS,
        "junk": JUNK,
        "latest_s": round(clean_s["latest"], 2),
        "from_middle_s": round(clean_s["from_middle"], 2),
        "latest_with_junk_s": round(dirty_s["latest"], 2),
        "from_middle_with_junk_s": round(dirty_s["from_middle"], 2),
        "runs": RUNS,
    }
