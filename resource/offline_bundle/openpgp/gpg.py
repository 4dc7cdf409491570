"""gpg itself: a throwaway home per operation, its status lines, and the keys imported into it.

Why a throwaway home: the keyring then holds exactly the keys the ``source`` names, so a
signature can only verify against a trusted key, no ownertrust is ever set, and nothing of a
secret key outlives the step. Decisions are read from gpg's machine status lines, never from its
human text or exit code alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import gnupg

from offline_bundle.errors import CryptoError

GPG_BUFFER = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_BYTES = 1 << 20
SIGNED_HEADER = b"-----BEGIN PGP SIGNED MESSAGE-----"
# Flags that keep gpg off the network and its output readable by GnuPG 2.2 (no AEAD packets).
COMMON_ARGS = ["--no-auto-key-retrieve", "--auto-key-locate", "local", "--trust-model", "always"]
CIPHER_ARGS = ["--cipher-algo", "AES256", "--digest-algo", "SHA256"]


@dataclass(frozen=True)
class Status:
    keyword: str
    args: tuple[str, ...]


def parse_status(stderr: str) -> list[Status]:
    """gpg's ``[GNUPG:]`` status lines from its stderr (python-gnupg runs it with --status-fd 2)."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            words = line[9:].split()
            if words:
                out.append(Status(words[0], tuple(words[1:])))
    return out


GPG_ERR_BAD_PASSPHRASE = 11
GPG_ERR_NO_PIN = 177  # no passphrase given for a protected key


def error_codes(statuses: list[Status]) -> set[int]:
    """gpg error codes (without their source bits) from ERROR and FAILURE status lines."""
    codes = set()
    for st in statuses:
        if st.keyword in ("ERROR", "FAILURE") and st.args:
            last = st.args[-1]
            head = last.split("_", 1)[0]
            if head.isdigit():
                codes.add(int(head) & 0xFFFF)
        if st.keyword == "BAD_PASSPHRASE":
            codes.add(GPG_ERR_BAD_PASSPHRASE)
    return codes


def human_errors(stderr: str) -> str:
    """gpg's own error words, for a message; status lines and key material left out."""
    lines = [
        ln.strip()
        for ln in stderr.splitlines()
        if ln.startswith("gpg:") and "passphrase" not in ln.lower() and "BEGIN PGP" not in ln
    ]
    return "; ".join(lines[-3:]) if lines else "no details"


class _WidePipesGPG(gnupg.GPG):
    """gpg writes its plaintext in 4 KiB blocks: through a 64 KiB pipe the reader thread woke for
    each one (114,000 reads for 512 MiB). 1 MiB pipes let blocks gather while Python is busy:
    ``in`` of 512 MiB took 2.7-3.2 s instead of 3.5-3.8 s (docs/benchmarks.md). The hook is
    python-gnupg's one place that makes the process (pinned below 0.6 in pyproject.toml); a pipe
    the kernel refuses to widen stays as it was.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Every gpg this object starts, so that an aborted operation leaves none running.
        self.children: list[subprocess.Popen[bytes]] = []
        super().__init__(*args, **kwargs)

    def _open_subprocess(self, *args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = super()._open_subprocess(*args, **kwargs)
        self.children.append(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        return proc


@contextlib.contextmanager
def gpg_home() -> Iterator[gnupg.GPG]:
    """A GPG bound to a fresh home, removed with its agent afterwards.

    The home lives under the system temp folder with a short name: gpg-agent's socket path must
    fit in 108 bytes.
    """
    home = tempfile.mkdtemp(prefix="ob-gpg-")
    gpg: _WidePipesGPG | None = None
    try:
        with open(os.path.join(home, "gpg-agent.conf"), "w") as f:
            f.write("allow-loopback-pinentry\n")
        gpg = _WidePipesGPG(gnupghome=home)
        gpg.buffer_size = GPG_BUFFER
        yield gpg
    finally:
        # An aborted operation (SIGTERM in the main thread) can leave gpg running mid-stream.
        for proc in gpg.children if gpg is not None else []:
            end_process(proc)
        subprocess.run(
            ["gpgconf", "--homedir", home, "--kill", "all"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def end_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    capabilities: str
    validity: str
    expires: str

    @property
    def revoked(self) -> bool:
        return self.validity == "r"

    @property
    def expired(self) -> bool:
        return self.validity == "e"


def key_infos(gpg: gnupg.GPG, secret: bool = False) -> dict[str, KeyInfo]:
    keys = gpg.list_keys(secret)
    return {
        k["fingerprint"]: KeyInfo(k["fingerprint"], k.get("cap", ""), k.get("trust", ""), k.get("expires", ""))
        for k in keys
    }


def import_public_keys(gpg: gnupg.GPG, armored: list[str] | tuple[str, ...], what: str) -> list[KeyInfo]:
    """Import public keys; each item must add at least one key and no secret key."""
    infos: list[KeyInfo] = []
    for i, text in enumerate(armored):
        before = set(key_infos(gpg))
        result = gpg.import_keys(text)
        if result.sec_imported:
            raise CryptoError(f"{what}[{i}] holds a secret key; give only the public key here")
        after = key_infos(gpg)
        new = [after[f] for f in result.fingerprints if f in after] or [after[f] for f in set(after) - before]
        if not new:
            raise CryptoError(
                f"{what}[{i}] could not be imported as an OpenPGP public key ({human_errors(result.stderr)})"
            )
        infos.extend({k.fingerprint: k for k in new}.values())
    return infos


def import_secret_key(gpg: gnupg.GPG, armored: str, passphrase: str | None, what: str) -> KeyInfo:
    result = gpg.import_keys(armored, passphrase=passphrase) if passphrase else gpg.import_keys(armored)
    secrets = key_infos(gpg, secret=True)
    if not secrets:
        raise CryptoError(f"{what} could not be imported as an OpenPGP secret key ({human_errors(result.stderr)})")
    if len(secrets) > 1:
        raise CryptoError(f"{what} holds {len(secrets)} secret keys; give exactly one")
    fpr = next(iter(secrets))
    return key_infos(gpg)[fpr]


def public_key_of(secret_armored: str, passphrase: str | None = None) -> str:
    """The armoured public half of a secret key, so the signer's own get can trust it."""
    with gpg_home() as gpg:
        info = import_secret_key(gpg, secret_armored, passphrase, "source.signing_private_key")
        return gpg.export_keys(info.fingerprint)


def recipient_fingerprints(armored: tuple[str, ...]) -> list[str]:
    """Check recipients can receive encrypted data; their primary fingerprints, sorted."""
    with gpg_home() as gpg:
        return sorted(k.fingerprint for k in usable_recipients(gpg, armored))


def usable_recipients(gpg: gnupg.GPG, armored: tuple[str, ...]) -> list[KeyInfo]:
    infos = import_public_keys(gpg, armored, "source.recipient_public_keys")
    for k in infos:
        if k.revoked or k.expired:
            state = "revoked" if k.revoked else "expired"
            raise CryptoError(f"source.recipient_public_keys: key {k.fingerprint} is {state}; it cannot receive data")
        if "E" not in k.capabilities:
            raise CryptoError(f"source.recipient_public_keys: key {k.fingerprint} has no usable encryption subkey")
    return infos


# ---------------------------------------------------------------------------------------------- keygen


@dataclass(frozen=True)
class GeneratedKey:
    fingerprint: str
    public_armored: str
    secret_armored: str


def generate_key(role: str, uid: str, passphrase: str | None, expire: str = "0") -> GeneratedKey:
    """A new ed25519 key: sign-only for ``sign`` and ``approve``, with a cv25519 encryption subkey for ``decrypt``."""
    if role not in ("sign", "decrypt", "approve"):
        raise CryptoError("role must be sign, decrypt or approve")
    pp = passphrase or ""
    with gpg_home() as gpg:
        base = [
            gpg.gpgbinary,
            "--homedir",
            gpg.gnupghome,
            "--batch",
            "--status-fd",
            "2",
            "--pinentry-mode",
            "loopback",
        ]
        base += ["--passphrase-fd", "0"]

        def run(*args: str) -> str:
            p = subprocess.run([*base, *args], input=(pp + "\n").encode(), capture_output=True, check=False)
            if p.returncode != 0:
                raise CryptoError(f"gpg key generation failed: {human_errors(p.stderr.decode('utf-8', 'replace'))}")
            return p.stderr.decode("utf-8", "replace")

        out = run("--quick-gen-key", uid, "ed25519", "sign", expire)
        created = [s for s in parse_status(out) if s.keyword == "KEY_CREATED"]
        if not created:
            raise CryptoError("gpg did not report the new key")
        fpr = created[0].args[1]
        if role == "decrypt":
            run("--quick-add-key", fpr, "cv25519", "encr", expire)
        public = gpg.export_keys(fpr)
        secret = gpg.export_keys(fpr, secret=True, passphrase=pp, expect_passphrase=bool(pp))
        if "PRIVATE KEY BLOCK" not in secret:
            raise CryptoError("gpg did not export the new secret key")
        return GeneratedKey(fingerprint=fpr, public_armored=public, secret_armored=secret)
