"""The ``sides`` fixture: a connected and an air-gapped source over one real bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import SeaweedServer
from tests.support.sides import Sides


@pytest.fixture
def sides(seaweed: SeaweedServer, bucket: str, gpg_keys: GpgKeys, tmp_path: Path) -> Sides:
    return Sides.create(seaweed, bucket, gpg_keys, tmp_path)
