"""OpenPGP through python-gnupg over the real ``gpg``, each operation in a throwaway ``GNUPGHOME``.

Why a throwaway home: the keyring then holds exactly the keys the ``source`` names, so a
signature can only verify against a trusted key, no ownertrust is ever set, and nothing of a
secret key outlives the step. Decisions are read from gpg's machine status lines (VALIDSIG with
the primary fingerprint, DECRYPTION_OKAY, GOODMDC), never from its human text or exit code alone.
Large data never sits in memory: output goes chunk by chunk to a ``sink`` callback.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gnupg

from .errors import CryptoError, VerificationError

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


def _error_codes(statuses: list[Status]) -> set[int]:
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


def _human_errors(stderr: str) -> str:
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

    def _open_subprocess(self, *args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = super()._open_subprocess(*args, **kwargs)
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
    try:
        with open(os.path.join(home, "gpg-agent.conf"), "w") as f:
            f.write("allow-loopback-pinentry\n")
        gpg = _WidePipesGPG(gnupghome=home)
        gpg.buffer_size = GPG_BUFFER
        yield gpg
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", home, "--kill", "all"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


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


def _key_infos(gpg: gnupg.GPG, secret: bool = False) -> dict[str, KeyInfo]:
    keys = gpg.list_keys(secret)
    return {
        k["fingerprint"]: KeyInfo(k["fingerprint"], k.get("cap", ""), k.get("trust", ""), k.get("expires", ""))
        for k in keys
    }


def import_public_keys(gpg: gnupg.GPG, armored: list[str] | tuple[str, ...], what: str) -> list[KeyInfo]:
    """Import public keys; each item must add at least one key and no secret key."""
    infos: list[KeyInfo] = []
    for i, text in enumerate(armored):
        before = set(_key_infos(gpg))
        result = gpg.import_keys(text)
        if result.sec_imported:
            raise CryptoError(f"{what}[{i}] holds a secret key; give only the public key here")
        after = _key_infos(gpg)
        new = [after[f] for f in result.fingerprints if f in after] or [after[f] for f in set(after) - before]
        if not new:
            raise CryptoError(
                f"{what}[{i}] could not be imported as an OpenPGP public key ({_human_errors(result.stderr)})"
            )
        infos.extend({k.fingerprint: k for k in new}.values())
    return infos


def import_secret_key(gpg: gnupg.GPG, armored: str, passphrase: str | None, what: str) -> KeyInfo:
    result = gpg.import_keys(armored, passphrase=passphrase) if passphrase else gpg.import_keys(armored)
    secrets = _key_infos(gpg, secret=True)
    if not secrets:
        raise CryptoError(f"{what} could not be imported as an OpenPGP secret key ({_human_errors(result.stderr)})")
    if len(secrets) > 1:
        raise CryptoError(f"{what} holds {len(secrets)} secret keys; give exactly one")
    fpr = next(iter(secrets))
    return _key_infos(gpg)[fpr]


def public_key_of(secret_armored: str, passphrase: str | None = None) -> str:
    """The armoured public half of a secret key, so the signer's own get can trust it."""
    with gpg_home() as gpg:
        info = import_secret_key(gpg, secret_armored, passphrase, "source.signing_private_key")
        return gpg.export_keys(info.fingerprint)


def recipient_fingerprints(armored: tuple[str, ...]) -> list[str]:
    """Check recipients can receive encrypted data; their primary fingerprints, sorted."""
    with gpg_home() as gpg:
        return sorted(k.fingerprint for k in _usable_recipients(gpg, armored))


def _usable_recipients(gpg: gnupg.GPG, armored: tuple[str, ...]) -> list[KeyInfo]:
    infos = import_public_keys(gpg, armored, "source.recipient_public_keys")
    for k in infos:
        if k.revoked or k.expired:
            state = "revoked" if k.revoked else "expired"
            raise CryptoError(f"source.recipient_public_keys: key {k.fingerprint} is {state}; it cannot receive data")
        if "E" not in k.capabilities:
            raise CryptoError(f"source.recipient_public_keys: key {k.fingerprint} has no usable encryption subkey")
    return infos


# ---------------------------------------------------------------------------------------------- sign


def clearsign(data: bytes, secret_armored: str, passphrase: str | None) -> tuple[bytes, str]:
    """Clear-sign ``data``; returns the signed message and the signer's primary fingerprint."""
    with gpg_home() as gpg:
        info = import_secret_key(gpg, secret_armored, passphrase, "source.signing_private_key")
        if info.revoked or info.expired:
            raise CryptoError(
                f"source.signing_private_key {info.fingerprint} is {'revoked' if info.revoked else 'expired'}"
            )
        if "S" not in info.capabilities:
            raise CryptoError(f"source.signing_private_key {info.fingerprint} cannot sign")
        result = gpg.sign(
            data,
            keyid=info.fingerprint,
            passphrase=passphrase if passphrase else None,
            clearsign=True,
            binary=True,
            # Without a passphrase gpg would ask gpg-agent's pinentry, which prompts on a terminal.
            extra_args=["--digest-algo", "SHA256", *([] if passphrase else ["--pinentry-mode", "loopback"])],
        )
        statuses = parse_status(result.stderr)
        if not any(s.keyword == "SIG_CREATED" for s in statuses) or not result.data:
            codes = _error_codes(statuses)
            if GPG_ERR_BAD_PASSPHRASE in codes:
                raise CryptoError("source.signing_private_key_passphrase is wrong for source.signing_private_key")
            if GPG_ERR_NO_PIN in codes or (not passphrase and "NEED_PASSPHRASE" in [s.keyword for s in statuses]):
                raise CryptoError(
                    f"source.signing_private_key {info.fingerprint} is protected by a passphrase: "
                    "set source.signing_private_key_passphrase"
                )
            raise CryptoError(f"signing failed: {_human_errors(result.stderr)}")
        signed = bytes(result.data)
        if "longer than" in result.stderr or not _carries(signed, data.rstrip(b"\n")):
            raise CryptoError("gpg did not sign the manifest whole (a line too long for clear-signing?)")
        return signed, info.fingerprint


def _carries(message: bytes, text: bytes) -> bool:
    """Whether clear-signed ``message`` carries ``text`` exactly.

    A manifest can be tens of MiB: the common case (no dash-escaped line, no CRLF) is compared in
    place; taking the message apart line by line made five copies of it (400 MiB for 60 MB).
    """
    start = message.find(b"\n\n")
    end = message.find(b"\n-----BEGIN PGP SIGNATURE-----", start + 1)
    if not message.startswith(SIGNED_HEADER) or start < 0 or end < 0:
        return False
    plain = message.find(b"\r\n", start, end) < 0 and message.find(b"\n- ", start, end) < 0
    if plain and not message.startswith(b"- ", start + 2):
        return memoryview(message)[start + 2 : end] == text
    return _signed_text(message) == text


def _signed_text(message: bytes) -> bytes | None:
    """The text of a clear-signed message as we wrote it (dash-escaping undone), None if malformed."""
    head, sep, rest = message.partition(b"\n\n")
    text, sep2, _ = rest.partition(b"\n-----BEGIN PGP SIGNATURE-----")
    if not sep or not sep2 or not head.startswith(SIGNED_HEADER):
        return None
    lines = [ln[2:] if ln.startswith(b"- ") else ln for ln in text.replace(b"\r\n", b"\n").split(b"\n")]
    return b"\n".join(lines)


@dataclass(frozen=True)
class Verified:
    data: bytes
    fingerprint: str
    signed_at: str
    key_expired: bool


def _signer_of(statuses: list[Status]) -> str:
    """The signing key gpg names in ERRSIG (its fingerprint since GnuPG 2.2.7, else the key id)."""
    for st in statuses:
        if st.keyword == "ERRSIG" and st.args:
            fpr = st.args[6] if len(st.args) > 6 and st.args[6] != "-" else ""
            return fpr or f"key id {st.args[0]}"
    ids = [st.args[0] for st in statuses if st.keyword == "NO_PUBKEY" and st.args]
    return f"key id {ids[0]}" if ids else "an unknown key"


def verify_clearsigned(message: bytes, trusted: list[str] | tuple[str, ...]) -> Verified:
    """Verify a clear-signed message against ``trusted`` keys only and return exactly what was signed.

    Refused: anything but one clear-signed message, a bad signature, a signature by a key not in
    ``trusted``, a revoked key. Accepted and reported: a key that has expired since (bundles outlive
    keys; air-gapped clocks drift).
    """
    stripped = message.lstrip()
    if not stripped.startswith(SIGNED_HEADER) or message.count(SIGNED_HEADER) != 1:
        raise VerificationError("commit object is not one OpenPGP clear-signed message")
    if not trusted:
        raise VerificationError("the bundle is signed but no trusted_public_keys are configured to verify it against")
    with gpg_home() as gpg:
        keys = import_public_keys(gpg, trusted, "source.trusted_public_keys")
        trusted_fprs = {k.fingerprint: k for k in keys}
        result = gpg.decrypt(message, extra_args=COMMON_ARGS)
        statuses = parse_status(result.stderr)
    words = [s.keyword for s in statuses]
    sig_words = [w for w in words if w in ("GOODSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "ERRSIG", "EXPSIG")]
    if "BADSIG" in words:
        raise VerificationError("the commit object's signature is BAD: the manifest was altered after signing")
    if "ERRSIG" in words or "NO_PUBKEY" in words:
        raise VerificationError(
            f"the commit object is signed by {_signer_of(statuses)}, which is not among trusted_public_keys "
            f"({', '.join(trusted_fprs)})"
        )
    if "REVKEYSIG" in words or "KEYREVOKED" in words:
        raise VerificationError("the commit object is signed by a REVOKED key; refused")
    if "EXPSIG" in words:
        raise VerificationError("the commit object's signature itself has expired; refused")
    valid = [s for s in statuses if s.keyword == "VALIDSIG"]
    if len(sig_words) != 1 or len(valid) != 1 or len(valid[0].args) < 10:
        raise VerificationError(
            f"the commit object does not carry exactly one valid signature ({_human_errors(result.stderr)})"
        )
    primary = valid[0].args[9]
    if primary not in trusted_fprs:
        raise VerificationError(
            f"the commit object is signed by {primary}, which is not among trusted_public_keys "
            f"({', '.join(trusted_fprs)})"
        )
    if trusted_fprs[primary].revoked:
        raise VerificationError(f"the commit object is signed by revoked key {primary}; refused")
    data = bytes(result.data)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return Verified(
        data=data,
        fingerprint=primary,
        signed_at=valid[0].args[2],
        key_expired="EXPKEYSIG" in words or trusted_fprs[primary].expired,
    )


# ------------------------------------------------------------------------------------- encrypt/decrypt


def _sink_callback(sink: Callable[[bytes], None]) -> Callable[[bytes], bool]:
    def on_data(chunk: bytes) -> bool:
        if chunk:
            sink(chunk)
        return False  # tell python-gnupg not to keep the chunk in memory

    return on_data


def encrypt_stream(
    src: io.RawIOBase,
    sink: Callable[[bytes], None],
    *,
    recipients: tuple[str, ...],
    passphrase: str | None,
    compression: str,
) -> list[str]:
    """Encrypt ``src`` to recipients and/or a passphrase; ciphertext goes to ``sink`` in chunks.

    Returns the recipients' primary fingerprints. The sink runs on python-gnupg's reader thread;
    an exception it raises is re-raised here after gpg has finished.
    """
    if not recipients and passphrase is None:
        raise CryptoError("nothing to encrypt to: give recipient_public_keys or encryption_passphrase")
    with gpg_home() as gpg:
        infos = _usable_recipients(gpg, recipients) if recipients else []
        fprs = sorted(k.fingerprint for k in infos)
        comp = (
            ["--compress-algo", "none", "-z", "0"] if compression == "none" else ["--compress-algo", "zlib", "-z", "6"]
        )
        args = [*COMMON_ARGS, *CIPHER_ARGS, *comp]
        gpg.on_data = _sink_callback(sink)
        if fprs:
            if passphrase is not None:
                args.append("--symmetric")
            result = gpg.encrypt_file(src, fprs, armor=False, passphrase=passphrase, extra_args=args)
        else:
            result = gpg.encrypt_file(
                src, None, symmetric="AES256", armor=False, passphrase=passphrase, extra_args=args
            )
        failure = getattr(result, "on_data_failure", None)
        if failure is not None:
            raise failure
        statuses = parse_status(result.stderr)
        words = [s.keyword for s in statuses]
        if "INV_RECP" in words:
            raise CryptoError("a recipient key cannot be used for encryption")
        if result.returncode != 0 or "END_ENCRYPTION" not in words:
            raise CryptoError(f"gpg could not encrypt: {_human_errors(result.stderr)}")
        return fprs


@dataclass(frozen=True)
class DecryptKeys:
    secret_key: str | None = None
    secret_key_passphrase: str | None = None
    passphrase: str | None = None


def decrypt_stream(src: io.RawIOBase, sink: Callable[[bytes], None], keys: DecryptKeys, *, use_key: bool) -> None:
    """Decrypt an OpenPGP message from ``src`` into ``sink``, requiring intact integrity protection.

    ``use_key`` picks the secret key (and its passphrase) over the symmetric passphrase: gpg takes
    one passphrase per run. A failure is told apart by gpg's status lines: only a bad MDC (the
    message's own hash) speaks of tampering; a missing or wrong passphrase, or a payload encrypted
    to another key, is a configuration mistake and is reported as one.
    """
    ours: KeyInfo | None = None
    our_subkeys: list[str] = []
    with gpg_home() as gpg:
        if use_key:
            if not keys.secret_key:
                raise CryptoError(
                    "the bundle is encrypted to recipient keys but no decryption_private_key is configured"
                )
            ours = import_secret_key(gpg, keys.secret_key, keys.secret_key_passphrase, "source.decryption_private_key")
            our_subkeys = [sub[0] for k in gpg.list_keys(True) for sub in k.get("subkeys", [])]
            passphrase = keys.secret_key_passphrase
        else:
            if keys.passphrase is None:
                raise CryptoError(
                    "the bundle is encrypted with a passphrase only but no encryption_passphrase is configured"
                )
            passphrase = keys.passphrase
        gpg.on_data = _sink_callback(sink)
        # Without a passphrase gpg would ask gpg-agent's pinentry, which prompts on a terminal.
        no_prompt = [] if passphrase else ["--pinentry-mode", "loopback"]
        result = gpg.decrypt_file(src, passphrase=passphrase or None, extra_args=[*COMMON_ARGS, *no_prompt])
        failure = getattr(result, "on_data_failure", None)
        if failure is not None:
            raise failure
        statuses = parse_status(result.stderr)
    words = [s.keyword for s in statuses]
    if "BADMDC" in words:
        raise VerificationError("the payload's integrity protection is broken: it was altered in transit")
    if "DECRYPTION_OKAY" in words and "GOODMDC" in words and result.returncode == 0:
        return
    codes = _error_codes(statuses)
    if use_key:
        assert ours is not None
        if GPG_ERR_BAD_PASSPHRASE in codes:
            raise CryptoError(
                "source.decryption_private_key_passphrase is wrong for source.decryption_private_key "
                f"{ours.fingerprint}"
            )
        if not passphrase and ("NEED_PASSPHRASE" in words or GPG_ERR_NO_PIN in codes):
            raise CryptoError(
                f"source.decryption_private_key {ours.fingerprint} is protected by a passphrase: "
                "set source.decryption_private_key_passphrase"
            )
        if "NO_SECKEY" in words and "DECRYPTION_KEY" not in words:
            to = sorted({s.args[0] for s in statuses if s.keyword in ("ENC_TO", "NO_SECKEY") and s.args})
            raise CryptoError(
                f"the payload is encrypted to key {', '.join(to)}, not to source.decryption_private_key "
                f"{ours.fingerprint} (subkeys {', '.join(our_subkeys) or 'none'}): configure the secret key "
                "whose public half is in the put side's recipient_public_keys"
            )
    elif GPG_ERR_BAD_PASSPHRASE in codes or "DECRYPTION_FAILED" in words:
        raise CryptoError(
            "the payload does not decrypt with source.encryption_passphrase: it differs from the put side's"
        )
    raise VerificationError(
        f"the payload did not decrypt with intact integrity protection ({_human_errors(result.stderr)})"
    )


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
                raise CryptoError(f"gpg key generation failed: {_human_errors(p.stderr.decode('utf-8', 'replace'))}")
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
