"""gpg's pipes are widened (the `in` speed-up of docs/benchmarks.md rests on it), and a stream
still decrypts byte for byte through them, with the real gpg."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os

from offline_bundle import openpgp

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def test_gpg_runs_with_1_mib_pipes() -> None:
    with openpgp.gpg_home() as gpg:
        proc = gpg._open_subprocess(["--version"])  # the hook python-gnupg calls for every operation
        try:
            sizes = [fcntl.fcntl(p.fileno(), F_GETPIPE_SZ) for p in (proc.stdin, proc.stdout)]
        finally:
            proc.communicate()
    assert sizes == [openpgp.PIPE_BYTES, openpgp.PIPE_BYTES]


def test_a_stream_larger_than_the_pipes_round_trips() -> None:
    key = openpgp.generate_key("decrypt", "pipes <pipes@example.invalid>", None)
    data = os.urandom(3 * openpgp.PIPE_BYTES + 12345)
    sealed = io.BytesIO()
    openpgp.encrypt_stream(
        io.BytesIO(data), sealed.write, recipients=(key.public_armored,), passphrase=None, compression="none"
    )
    out = hashlib.sha256()
    sizes: list[int] = []

    def sink(chunk: bytes) -> None:
        out.update(chunk)
        sizes.append(len(chunk))

    openpgp.decrypt_stream(
        io.BytesIO(sealed.getvalue()), sink, openpgp.DecryptKeys(secret_key=key.secret_armored), use_key=True
    )
    assert out.hexdigest() == hashlib.sha256(data).hexdigest() and sum(sizes) == len(data)
