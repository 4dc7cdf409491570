"""Throwaway OpenPGP keys made with the real gpg binary.

Why real gpg: the resource shells out to gpg (directly or via python-gnupg),
and what matters is how *that* gpg treats expired, revoked, wrong or
passphrase-protected keys.  ed25519/cv25519 keys generate in milliseconds, so
the whole set is made once per session.

Every gpg call here runs in its own short-lived GNUPGHOME under /tmp: the
agent's socket path must fit in ~107 bytes (pytest's tmp dirs can be longer),
and a private home means the developer's real keyring is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

PASSPHRASE = "correct horse battery"
# When the expired signer was valid: created at this instant, expires 1 day later.
EXPIRED_KEY_CREATED = "20200101T000000"
EXPIRED_KEY_VALID_AT = "20200101T120000"


class GpgError(RuntimeError):
    """A gpg command failed; the message carries its stderr."""


@dataclass(frozen=True)
class TestKey:
    """One generated key, as armored text a test can feed to the resource.

    ``secret_armored`` is still protected by ``passphrase`` when there is one.
    ``public_armored_unrevoked`` is only set for the revoked key: it is the
    public key as it was before the revocation was imported.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name

    name: str
    uid: str
    fingerprint: str
    public_armored: str
    secret_armored: str
    passphrase: str | None = None
    encryption_subkey: str | None = None
    public_armored_unrevoked: str | None = None


@dataclass(frozen=True)
class GpgKeys:
    """The session's key set; attribute names say what each key is for."""

    signer: TestKey
    signer_pw: TestKey
    untrusted_signer: TestKey
    recipient: TestKey
    recipient_pw: TestKey
    other_recipient: TestKey
    expired_signer: TestKey
    revoked_signer: TestKey

    def all(self) -> dict[str, TestKey]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- low-level gpg --------------------------------------------------------------


def gpg_binary() -> str:
    found = shutil.which("gpg")
    if not found:
        raise FileNotFoundError("gpg not found; run `make install` (scripts/install-system-deps.sh)")
    return found


@contextlib.contextmanager
def temporary_gnupghome(prefix: str = "obg-") -> Iterator[Path]:
    """A private, short-path GNUPGHOME that is fully cleaned up afterwards.

    The agent gpg starts on demand would outlive the directory, so it is
    killed with ``gpgconf --kill all`` before the directory is removed.

    The agent is told to use the minimum S2K iteration count: with its
    calibrated default every passphrase (re)protection costs ~1 s here, which
    made generating the key set take 5 s and each signing helper 1.5 s.
    Exported keys therefore carry a cheap S2K - fine for throwaway keys.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
    try:
        yield home
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def gpg(
    home: Path,
    *args: str,
    input: bytes | None = None,
    passphrase: str | None = None,
    faked_time: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run gpg non-interactively against ``home``.

    ``passphrase`` is given through loopback pinentry (an empty string means
    "no protection" when generating).  ``faked_time`` is gpg's
    ``--faked-system-time`` (e.g. ``20200101T000000``).
    """
    cmd = [gpg_binary(), "--homedir", str(home), "--batch", "--no-tty", "--yes", "--no-auto-key-locate"]
    if passphrase is not None:
        cmd += ["--pinentry-mode", "loopback", "--passphrase", passphrase]
    if faked_time is not None:
        cmd += ["--faked-system-time", faked_time]
    cmd += list(args)
    env = {**os.environ, "GNUPGHOME": str(home), "LC_ALL": "C"}
    proc = subprocess.run(
        cmd,
        input=input if input is not None else b"",
        capture_output=True,
        env=env,
        check=False,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise GpgError(f"gpg {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
    return proc


def _created_fingerprint(proc: subprocess.CompletedProcess[bytes]) -> str:
    """Fingerprint from the ``[GNUPG:] KEY_CREATED <type> <fpr>`` status line."""
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if parts[:2] == ["[GNUPG:]", "KEY_CREATED"]:
            return parts[3]
    raise GpgError(f"no KEY_CREATED status line in gpg output:\n{proc.stdout.decode()}")


def import_keys(home: Path, *armored: str, passphrase: str | None = None) -> None:
    for text in armored:
        gpg(home, "--import", input=text.encode(), passphrase=passphrase)


def colon_listing(home: Path, *, secret: bool = False) -> list[list[str]]:
    """``--with-colons`` key listing split into fields (see gpg's DETAILS doc)."""
    mode = "--list-secret-keys" if secret else "--list-keys"
    proc = gpg(home, "--with-colons", "--fixed-list-mode", mode)
    return [line.split(":") for line in proc.stdout.decode().splitlines()]


def key_validity(public_armored: str, fingerprint: str) -> str:
    """Validity letter of a primary key as a fresh keyring sees it.

    ``e`` expired, ``r`` revoked, ``-``/``q``/``f``/``u`` otherwise.  A fresh
    home matters: in the generating home every key is ultimately trusted.
    """
    with temporary_gnupghome() as home:
        import_keys(home, public_armored)
        rows = colon_listing(home)
    for i, row in enumerate(rows):
        if row[0] == "pub" and any(r[0] == "fpr" and r[9] == fingerprint for r in rows[i + 1 : i + 2]):
            return row[1]
    raise GpgError(f"key {fingerprint} not in listing after import")


# -- signing helpers for tests ---------------------------------------------------


def _with_secret_key(key: TestKey, when: str | None, *args: str, data: bytes) -> bytes:
    with temporary_gnupghome() as home:
        import_keys(home, key.secret_armored, passphrase=key.passphrase or "")
        proc = gpg(
            home,
            "--local-user",
            key.fingerprint,
            *args,
            input=data,
            passphrase=key.passphrase or "",
            faked_time=when,
        )
        return proc.stdout


def clearsign_at(key: TestKey, data: bytes, when: str) -> bytes:
    """Clear-sign ``data`` with ``key`` as if the clock said ``when``.

    This is how a test obtains a signature by ``expired_signer`` made while
    it was still valid (use ``EXPIRED_KEY_VALID_AT``).
    """
    return _with_secret_key(key, when, "--digest-algo", "SHA256", "--clearsign", data=data)


def clearsign(key: TestKey, data: bytes) -> bytes:
    return _with_secret_key(key, None, "--digest-algo", "SHA256", "--clearsign", data=data)


def detach_sign(key: TestKey, data: bytes, *, armor: bool = True, when: str | None = None) -> bytes:
    args = ["--digest-algo", "SHA256", "--detach-sign"]
    if armor:
        args.insert(0, "--armor")
    return _with_secret_key(key, when, *args, data=data)


def encrypt_for(data: bytes, recipients: Sequence[TestKey], *, armor: bool = False) -> bytes:
    """Encrypt to the given keys' public halves (no signature)."""
    with temporary_gnupghome() as home:
        import_keys(home, *(k.public_armored for k in recipients))
        args = ["--trust-model", "always", "--encrypt"]
        if armor:
            args.insert(0, "--armor")
        for k in recipients:
            args += ["--recipient", k.fingerprint]
        return gpg(home, *args, input=data).stdout


# -- key generation ----------------------------------------------------------------


def _generate(
    home: Path,
    name: str,
    *,
    passphrase: str | None = None,
    encrypt: bool = False,
    expire: str = "1y",
    faked_time: str | None = None,
) -> TestKey:
    uid = f"offline-bundle test {name} <{name.replace('_', '-')}@test.invalid>"
    pw = passphrase or ""
    proc = gpg(
        home,
        "--status-fd",
        "1",
        "--quick-gen-key",
        uid,
        "ed25519",
        "sign",
        expire,
        passphrase=pw,
        faked_time=faked_time,
    )
    fpr = _created_fingerprint(proc)
    subkey = None
    if encrypt:
        proc = gpg(
            home,
            "--status-fd",
            "1",
            "--quick-add-key",
            fpr,
            "cv25519",
            "encr",
            expire,
            passphrase=pw,
            faked_time=faked_time,
        )
        subkey = _created_fingerprint(proc)
    return TestKey(
        name=name,
        uid=uid,
        fingerprint=fpr,
        public_armored=_export_public(home, fpr),
        secret_armored=_export_secret(home, fpr, pw),
        passphrase=passphrase,
        encryption_subkey=subkey,
    )


def _export_public(home: Path, fpr: str) -> str:
    return gpg(home, "--armor", "--export", fpr).stdout.decode()


def _export_secret(home: Path, fpr: str, passphrase: str) -> str:
    return gpg(home, "--armor", "--export-secret-keys", fpr, passphrase=passphrase).stdout.decode()


def _revoke(home: Path, key: TestKey) -> TestKey:
    """Import the revocation certificate gpg pre-generated for ``key``.

    gpg writes it to openpgp-revocs.d/ with a ':' in front of the armor header
    so it cannot be imported by accident; strip that.  The secret export is
    left as it was before revocation, so tests can still produce signatures
    with the key and check they are rejected against the revoked public key.
    """
    cert = (home / "openpgp-revocs.d" / f"{key.fingerprint}.rev").read_text()
    cert = cert.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----")
    gpg(home, "--import", input=cert.encode())
    return TestKey(
        name=key.name,
        uid=key.uid,
        fingerprint=key.fingerprint,
        public_armored=_export_public(home, key.fingerprint),
        secret_armored=key.secret_armored,
        passphrase=key.passphrase,
        encryption_subkey=key.encryption_subkey,
        public_armored_unrevoked=key.public_armored,
    )


def generate_keys() -> GpgKeys:
    """Generate the full key set in one temporary home, then discard the home."""
    with temporary_gnupghome() as home:
        revoked = _generate(home, "revoked_signer")
        return GpgKeys(
            signer=_generate(home, "signer"),
            signer_pw=_generate(home, "signer_pw", passphrase=PASSPHRASE),
            untrusted_signer=_generate(home, "untrusted_signer"),
            recipient=_generate(home, "recipient", encrypt=True),
            recipient_pw=_generate(home, "recipient_pw", passphrase=PASSPHRASE, encrypt=True),
            other_recipient=_generate(home, "other_recipient", encrypt=True),
            expired_signer=_generate(home, "expired_signer", expire="1d", faked_time=EXPIRED_KEY_CREATED),
            revoked_signer=_revoke(home, revoked),
        )
