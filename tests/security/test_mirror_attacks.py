"""A writer of either store attacks mirror: payloads replaced in the source (before or during the copy),
objects planted in the target. Nobody holds the signing key, so nothing but signed bytes may reach the
target, not even into a multipart upload that is aborted later.

The target is a SeaweedFS of this module's own: a test searches all of its files on disk for bytes
that must never have been sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from offline_bundle.core.config import parse_source
from offline_bundle.storage.s3.store import S3Store
from offline_bundle.transfer.mirror import Mirror
from tests.support.carrier import Carry, leaks, make_build, needles_of, new_bucket, ok, random_bytes
from tests.support.cli import run_cli
from tests.support.concourse import make_source
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer.create(tmp_path_factory.mktemp("mirror-target"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def carried(seaweed: SeaweedServer, gpg_keys: GpgKeys, tmp_path_factory: pytest.TempPathFactory) -> Carry:
    folder = tmp_path_factory.mktemp("mirrored")
    carry = Carry(seaweed, new_bucket(seaweed), gpg_keys, folder)
    carry.pack(make_build(folder / "build", "one"), "1.0.0")
    return carry


@dataclass
class Link:
    """A copy of the carried bucket as the mirror's source, and an empty target bucket."""

    carry: Carry
    far: SeaweedServer
    source: str
    target: str

    def object_key(self, part: str) -> str:
        key = self.carry.payload("1.0.0", part)["key"]
        return key if key.startswith("demo/") else f"demo/{key}"

    def mirror(self) -> Any:
        src = self.carry.reader_config(self.carry.near, self.source)
        dst = self.carry.reader_config(self.far, self.target)
        return run_cli("mirror", "--from-config", src, "--to-config", dst, timeout=120)

    def target_keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.far.client().list_objects_v2(Bucket=self.target).get("Contents", []))


@pytest.fixture
def link(carried: Carry, far: SeaweedServer) -> Link:
    client = carried.near.client()
    source = new_bucket(carried.near)
    for o in client.list_objects_v2(Bucket=carried.bucket, Prefix="demo/").get("Contents", []):
        if "/_records/" not in o["Key"]:
            client.copy_object(Bucket=source, Key=o["Key"], CopySource={"Bucket": carried.bucket, "Key": o["Key"]})
    return Link(carried, far, source, new_bucket(far))


@pytest.mark.parametrize("size", ["same size", "other size"])
def test_a_payload_replaced_in_the_source_store_never_reaches_the_target(link: Link, size: str) -> None:
    big = link.carry.payload("1.0.0", "big")
    planted = random_bytes(big["size"] + (0 if size == "same size" else 1000), seed=201)
    link.carry.near.client().put_object(Bucket=link.source, Key=link.object_key("big"), Body=planted)

    run = link.mirror()
    assert run.returncode == 1 and "FAILED 1.0.0:" in run.stdout, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    reason = run.stdout.split("FAILED 1.0.0:", 1)[1]
    assert "the signed manifest" in reason, reason
    assert leaks(link.far, link.target, needles_of(planted)) == []
    assert not [k for k in link.target_keys() if k.endswith("manifest.json.asc")]


def test_a_same_size_object_planted_in_the_target_is_replaced_not_taken_for_the_payload(link: Link) -> None:
    big = link.carry.payload("1.0.0", "big")
    link.far.client().put_object(
        Bucket=link.target, Key=link.object_key("big"), Body=random_bytes(big["size"], seed=202)
    )
    run = ok(link.mirror())
    assert "holds other bytes than the signed manifest names; it will be replaced" in run.stderr
    assert "2 payload(s) copied, 0 already there" in run.stdout, run.stdout
    body = link.far.client().get_object(Bucket=link.target, Key=link.object_key("big"))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == big["sha256"]


def test_a_payload_replaced_in_the_source_between_its_check_and_its_copy_is_not_sent(
    link: Link, tmp_path: Path
) -> None:
    big = link.carry.payload("1.0.0", "big")
    planted = random_bytes(big["size"], seed=203)
    keys = [link.carry.keys.signer.public_armored]
    src = parse_source(make_source(link.carry.near, link.source, trusted_public_keys=keys), where="from")
    dst = parse_source(
        make_source(link.far, link.target, use_writer_identity=True, trusted_public_keys=keys), where="to"
    )
    src_store = S3Store.from_source(src)
    reads: list[int] = []
    real_open_range = src_store.open_range

    def open_range(key: str, size: int, start: int, end: int, on_bytes: Any = None) -> Any:
        if key == link.object_key("big"):
            reads.append(start)
            if reads.count(0) == 2:  # the copy begins: a writer of the source store swaps the payload
                link.carry.near.client().put_object(Bucket=link.source, Key=link.object_key("big"), Body=planted)
        return real_open_range(key, size, start, end, on_bytes)

    src_store.open_range = open_range  # type: ignore[method-assign]
    lines: list[str] = []
    result = Mirror(src, src_store, dst, S3Store.from_source(dst), lines.append).run(version="1.0.0")

    assert [v for v, _ in result.failed] == ["1.0.0"], lines
    assert "changed between its check and its upload" in result.failed[0][1]
    assert reads.count(0) == 2  # it was read twice: checked whole, then copied
    assert leaks(link.far, link.target, needles_of(planted)) == []
    assert not [k for k in link.target_keys() if k.endswith("manifest.json.asc")]
