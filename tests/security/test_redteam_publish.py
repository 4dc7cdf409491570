"""Where ``publish`` writes in a target bucket: ``<target prefix><destination><path>``.

A signed manifest's destination and paths must keep every key under the target prefix and be keys
the put side itself could have written: no backslash (a Windows path separator for whoever mirrors
the bucket to disk), no control character (S3 listings are XML 1.0, which cannot carry them), and
a folder, not a prefix glued to the first path segment.
"""

from __future__ import annotations

import json

import pytest

from offline_bundle.core.config import check_destination
from offline_bundle.core.manifest import parse_manifest
from offline_bundle.errors import ConfigError, VerificationError

SHA = "a" * 64


def manifest(destination: str, path: str = "x") -> bytes:
    return json.dumps(
        {
            "format_version": 1,
            "name": "demo",
            "version": "1",
            "created_at": "2026-11-30T00:00:00Z",
            "tool": {"name": "forger", "version": "0"},
            "parts": [
                {
                    "name": "p",
                    "destination": destination,
                    "payload": {"key": f"_blobs/{SHA[:32]}", "size": 1, "sha256": SHA},
                    "encryption": {"recipients": [], "passphrase": False, "compression": "none"},
                    "files": [{"path": path, "type": "file", "mode": "0644", "mtime": 0, "size": 1, "sha256": SHA}],
                }
            ],
        }
    ).encode()


@pytest.mark.parametrize("destination", ["", "p/", "a/b/", "a//b/", "./", "...", "%2e%2e/"])
def test_destinations_the_put_side_writes_parse_and_stay_under_the_prefix(destination: str) -> None:
    try:
        normal = check_destination(destination, "destination")
    except ConfigError:
        pytest.skip("not a destination the put side writes")
    part = parse_manifest(manifest(normal)).parts[0]
    key = "target/" + part.destination + part.files[0].path
    assert key.startswith("target/")
    assert ".." not in key.split("/")


CLIMBING_OR_ODD = ["../", "/etc/", "a/../../", "..", "a\\..\\..\\", "a\n/", "a\x7f/", "a\u0085/"]


@pytest.mark.parametrize("destination", CLIMBING_OR_ODD)
def test_the_put_side_refuses_odd_destinations(destination: str) -> None:
    with pytest.raises(ConfigError, match="destination"):
        check_destination(destination, "destination")


@pytest.mark.parametrize("destination", [*CLIMBING_OR_ODD, "p"])
def test_the_parser_refuses_what_the_put_side_never_writes(destination: str) -> None:
    """'p' without its '/': the put side adds it; in a manifest it would glue 'p' to each path."""
    with pytest.raises(VerificationError, match="destination"):
        parse_manifest(manifest(destination))
