"""Session-wide fixtures: one real SeaweedFS, one set of real gpg keys.

Both are session-scoped because they are expensive relative to a test and
stateless from a test's point of view: each test isolates itself with its own
bucket (``bucket``) and its own GNUPGHOME (``tests.support.gpgkeys``).
Plain helpers live in ``tests/support/`` so they are importable without pytest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.forge import Forger
from tests.support.gpgkeys import GpgKeys, generate_keys
from tests.support.seaweed import SeaweedServer, new_bucket_name
from tests.support.sides import Sides


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A running ``weed mini`` with rw and ro S3 identities, for the whole session.

    Tests may ``stop()``/``start()`` it (same ports, same data); the ``bucket``
    fixture restarts it if a previous test left it stopped.
    """
    server = SeaweedServer.create(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(seaweed: SeaweedServer) -> str:
    """A fresh, empty bucket per test, so tests never see each other's objects."""
    seaweed.ensure_running()
    name = new_bucket_name()
    seaweed.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def gpg_keys() -> GpgKeys:
    """Throwaway OpenPGP keys (see ``GpgKeys`` for the roles); the keyring that
    made them is already deleted, only the armored exports remain."""
    return generate_keys()


@pytest.fixture
def sides(seaweed: SeaweedServer, bucket: str, gpg_keys: GpgKeys, tmp_path: Path) -> Sides:
    """A connected and an air-gapped source over one fresh bucket (``tests.support.sides``)."""
    return Sides.create(seaweed, bucket, gpg_keys, tmp_path)


@pytest.fixture
def forger(sides: Sides) -> Forger:
    """Writes bundles signed with the trusted test key but made by hand: what a signed manifest from
    a buggy writer, or a forger holding the key, could hold."""
    return Forger(sides.client(), sides.bucket, sides.keys.signer, sides.keys.recipient)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The secrets audit reads what every other test printed, so it runs last."""
    audits = [i for i in items if i.get_closest_marker("secrets_audit")]
    items[:] = [i for i in items if not i.get_closest_marker("secrets_audit")] + audits
