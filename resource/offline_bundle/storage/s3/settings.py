"""What an S3 client is built from, apart from the bundle's other settings.

``S3Store`` and ``make_s3_client`` take these rather than a whole ``Source`` so that a publish
target, a mirror's far side and a test describe a bucket the same way, and so that nothing here
sees a signing key or a passphrase.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from dataclasses import dataclass, field

import certifi

from offline_bundle.core.config import Source
from offline_bundle.core.fields import carry_fields


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint: str | None = None  # None: AWS S3 itself
    region_name: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    path_style: bool = False  # addressing: bucket in the path (most S3-compatible stores) or in the host
    disable_ssl: bool = False
    skip_ssl_verification: bool = False
    ca_bundle: str | None = None  # PEM added to the default CAs

    @classmethod
    def from_source(cls, source: Source) -> S3Settings:
        return carry_fields(cls, source)

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint with its scheme: a bare ``host:port`` gets the one ``disable_ssl`` implies."""
        endpoint = self.endpoint
        if endpoint and "://" not in endpoint:
            endpoint = ("http://" if self.disable_ssl else "https://") + endpoint
        return endpoint

    @property
    def description(self) -> str:
        """How messages name the bucket: ``s3://bucket at endpoint``."""
        return f"s3://{self.bucket} at {self.endpoint or 'AWS S3'}"


_CA_FILES: list[str] = []


def ca_bundle_file(extra_pem: str) -> str:
    """The default CA store plus the source's ``ca_bundle``: private CAs add to, not replace, trust."""

    with open(certifi.where()) as f:
        default = f.read()
    fd, path = tempfile.mkstemp(prefix="ob-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as f:
        f.write(default + "\n" + extra_pem.strip() + "\n")
    if not _CA_FILES:
        atexit.register(_remove_ca_files)
    _CA_FILES.append(path)
    return path


def _remove_ca_files() -> None:
    for path in _CA_FILES:
        if os.path.exists(path):
            os.unlink(path)
