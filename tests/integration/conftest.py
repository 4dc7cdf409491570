"""The ``sides`` fixture: a connected and an air-gapped source over one real bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.concourse import make_source
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import SeaweedServer
from tests.support.sides import Sides


@pytest.fixture
def sides(seaweed: SeaweedServer, bucket: str, gpg_keys: GpgKeys, tmp_path: Path) -> Sides:
    # Each side runs with the least privileges README documents: the put side can read, list and
    # write objects (no admin, no bucket creation); the get side can only read and list.
    put_source = make_source(
        seaweed,
        bucket,
        use_writer_identity=True,
        recipient_public_keys=[gpg_keys.recipient.public_armored],
        signing_private_key=gpg_keys.signer.secret_armored,
    )
    get_source = make_source(
        seaweed,
        bucket,
        use_readonly_identity=True,
        trusted_public_keys=[gpg_keys.signer.public_armored],
        decryption_private_key=gpg_keys.recipient.secret_armored,
    )
    return Sides(seaweed, bucket, gpg_keys, put_source, get_source, tmp_path)
