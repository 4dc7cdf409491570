"""A private CA and a server certificate for loopback, made with the openssl binary.

Why openssl rather than a Python library: it is what operators use to make such a CA, it needs no
extra test dependency, and a certificate it makes is one a real TLS client must accept or refuse.
Shared by the S3 TLS tests and the HTTPS file server of ``tests.support.https_server``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 and localhost: (ca.pem, srv.pem, srv.key)."""
    folder.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=offline-bundle test CA"
    )
    ossl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    ossl(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    )
    return folder / "ca.pem", folder / "srv.pem", folder / "srv.key"
