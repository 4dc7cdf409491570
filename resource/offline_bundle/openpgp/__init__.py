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

from offline_bundle.errors import CryptoError, VerificationError

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
            _end_process(proc)
        subprocess.run(
            ["gpgconf", "--homedir", home, "--kill", "all"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def _end_process(proc: subprocess.Popen[bytes]) -> None:
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


class UntrustedSigner(VerificationError):
    """A well-formed signature by a key that is not trusted: most often a configuration mistake
    (the wrong key in trusted_public_keys), so the message names both sides."""

    def __init__(self, fingerprint: str, trusted: list[str]) -> None:
        self.fingerprint = fingerprint
        super().__init__(
            f"the commit object is signed by {fingerprint}, which is not among trusted_public_keys "
            f"({', '.join(trusted) or 'none'}): is trusted_public_keys the signing side's public key?"
        )


class MalformedCommit(VerificationError):
    """The commit object is not a well-formed clear-signed message, or gpg cannot check its signature
    (a changed ``Hash:`` header, say): altered or broken in the bucket, not a question of keys."""


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


# Digest names a ``Hash:`` armour header may carry (RFC 4880 section 9.4).
HASH_NAMES = frozenset({b"MD5", b"SHA1", b"RIPEMD160", b"SHA224", b"SHA256", b"SHA384", b"SHA512"})
SIG_BEGIN = b"-----BEGIN PGP SIGNATURE-----"
SIG_END = b"-----END PGP SIGNATURE-----"
BATCH_FILES = 256  # commit objects per gpg process; keeps the command line short


def check_clearsigned_form(message: bytes) -> None:
    """Refuse anything but exactly one clear-signed message with nothing around it.

    gpg skips what it does not understand (text before the header, other armour blocks after the
    signature, unescaped dash lines); none of that is ever signed, so none of it is accepted here,
    and what gpg verifies is then the whole object.
    """
    stripped = message.strip()
    lines = stripped.replace(b"\r\n", b"\n").split(b"\n")
    if lines[0] != SIGNED_HEADER or message.count(SIGNED_HEADER) != 1:
        raise MalformedCommit("the commit object is not one OpenPGP clear-signed message")
    i = 1
    while i < len(lines) and lines[i].strip():
        name, sep, value = lines[i].partition(b": ")
        names = [v.strip() for v in value.split(b",")]
        if name != b"Hash" or not sep or not all(n in HASH_NAMES for n in names):
            raise MalformedCommit(
                "the commit object's armour header was altered (a clear-signed message carries only Hash: lines "
                "naming known digests)"
            )
        i += 1
    body = lines[i + 1 :]
    if body.count(SIG_BEGIN) != 1 or body.count(SIG_END) != 1 or body[-1] != SIG_END:
        raise MalformedCommit("the commit object does not end with exactly one signature block")
    text = body[: body.index(SIG_BEGIN)]
    if any(ln.startswith(b"-") and not ln.startswith(b"- ") for ln in text):
        raise MalformedCommit("the commit object's signed text holds an unescaped dash line")


def canonical_text(signed: bytes) -> bytes:
    """The signed text as OpenPGP defines it, written with LF line ends.

    A clear signature covers lines, not their ends: it is computed over CRLF-ended lines with
    trailing blanks removed (RFC 4880 section 7.1), so a commit object converted to CRLF, or with
    blanks appended, still verifies. Two objects with valid signatures over the same statement
    give the same bytes here; LF is what the writer signs (compact JSON never ends a line in a blank).
    """
    lines = [ln.rstrip(b" \t\r") for ln in signed.split(b"\n")]
    if lines and lines[-1] == b"":
        lines.pop()  # gpg ends the text with the line break before the signature block
    return b"\n".join(lines)


def verify_clearsigned(message: bytes, trusted: list[str] | tuple[str, ...]) -> Verified:
    """Verify a clear-signed message against ``trusted`` keys only and return exactly what was signed.

    Refused: anything but one clear-signed message, a bad signature, a signature by a key not in
    ``trusted``, a revoked key. Accepted and reported: a key that has expired since (bundles outlive
    keys; air-gapped clocks drift).
    """
    result = verify_clearsigned_many([message], trusted)[0]
    if isinstance(result, VerificationError):
        raise result
    return result


def verify_clearsigned_many(
    messages: list[bytes], trusted: list[str] | tuple[str, ...]
) -> list[Verified | VerificationError]:
    """Verify many commit objects at once: each result in the place of its message."""
    with ClearsignVerifier(trusted) as verifier:
        return verifier.verify(messages)


class ClearsignVerifier:
    """Verifies commit objects against ``trusted`` keys, in one GnuPG home for its whole life.

    One gpg process per batch instead of one per object, and the keys imported once: spawning gpg
    costs 10-50 ms, which made ``check`` over hundreds of versions take seconds.
    ``--decrypt-files`` writes each signed text to its own file, so what is returned is gpg's
    output, not a parse of ours. gpg stops a batch at a BAD signature; the rest then runs in a new
    process, so each bad object costs one more process. The home is made only when a signed object
    first needs it.
    """

    def __init__(self, trusted: list[str] | tuple[str, ...]) -> None:
        self.trusted = trusted
        self._stack = contextlib.ExitStack()
        self._gpg: gnupg.GPG | None = None
        self._keys: dict[str, KeyInfo] = {}
        self._calls = 0

    def __enter__(self) -> ClearsignVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _home(self) -> gnupg.GPG:
        if self._gpg is None:
            if not self.trusted:
                raise VerificationError(
                    "the bundle is signed but no trusted_public_keys are configured to verify it against"
                )
            gpg = self._stack.enter_context(gpg_home())
            self._keys = {k.fingerprint: k for k in import_public_keys(gpg, self.trusted, "source.trusted_public_keys")}
            self._gpg = gpg
        return self._gpg

    def verify(self, messages: list[bytes]) -> list[Verified | VerificationError]:
        results: dict[int, Verified | VerificationError] = {}
        pending: list[int] = []
        for i, message in enumerate(messages):
            try:
                check_clearsigned_form(message)
                pending.append(i)
            except VerificationError as e:
                results[i] = e
        if pending:
            gpg = self._home()
            self._calls += 1
            work = os.path.join(gpg.gnupghome, f"verify-{self._calls}")
            os.mkdir(work, 0o700)
            for i in pending:
                with open(os.path.join(work, f"{i}.asc"), "wb") as f:
                    f.write(messages[i])
            # One process at a time: gpg processes sharing a home wait on each other's keyring locks
            # (4 side by side took 0.66 s where one took 0.17 s for 40 objects, half of them BAD).
            results.update(self._run(gpg, work, pending))
            shutil.rmtree(work, ignore_errors=True)
        return [results.get(i) or VerificationError("the commit object was not verified") for i in range(len(messages))]

    def _run(self, gpg: gnupg.GPG, work: str, pending: list[int]) -> dict[int, Verified | VerificationError]:
        """Verify the files ``pending`` names in ``work``, restarting gpg after each file that ends a run."""
        results: dict[int, Verified | VerificationError] = {}
        while pending:
            batch = pending[:BATCH_FILES]
            sections = _decrypt_files(gpg, work, batch)
            for n, i in enumerate(batch):
                if i not in sections:
                    # gpg stopped before this file: the one before it ended the run (a BAD signature),
                    # or gpg itself failed, which this file then reports so that the loop moves on
                    if n == 0:
                        results[i] = VerificationError("gpg did not check the commit object (see its messages)")
                        n += 1
                    pending = batch[n:] + pending[len(batch) :]
                    break
                statuses, human, done = sections[i]
                results[i] = _judge(statuses, human, os.path.join(work, str(i)), self._keys)
                if not done:
                    pending = batch[n + 1 :] + pending[len(batch) :]
                    break
            else:
                pending = pending[len(batch) :]
        return results


Section = tuple[list[Status], str, bool]


def _decrypt_files(gpg: gnupg.GPG, work: str, batch: list[int]) -> dict[int, Section]:
    """Run ``gpg --decrypt-files`` over ``batch``; per file its status lines, gpg's words, and
    whether gpg finished it (FILE_DONE)."""
    proc = subprocess.run(
        [
            gpg.gpgbinary,
            "--homedir",
            gpg.gnupghome,
            "--batch",
            "--no-tty",
            "--yes",
            "--status-fd",
            "1",
            *COMMON_ARGS,
            "--decrypt-files",
            *(f"{i}.asc" for i in batch),
        ],
        cwd=work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    sections: dict[int, Section] = {}
    current: int | None = None
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] FILE_START "):
            name = line.split(" ", 3)[-1]
            current = int(name[: -len(".asc")]) if name.endswith(".asc") and name[:-4].isdigit() else None
            if current is not None:
                sections[current] = ([], "", False)
            continue
        if current is None:
            continue
        statuses, human, done = sections[current]
        if line.startswith("[GNUPG:] FILE_DONE"):
            sections[current] = (statuses, human, True)
            current = None
        elif line.startswith("[GNUPG:] "):
            statuses.extend(parse_status(line))
        else:
            sections[current] = (statuses, human + line + "\n", done)
    return sections


def _judge(
    statuses: list[Status], human: str, out_path: str, trusted: dict[str, KeyInfo]
) -> Verified | VerificationError:
    """gpg's verdict on one commit object, from its status lines only."""
    words = [s.keyword for s in statuses]
    sig_words = [w for w in words if w in ("GOODSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "ERRSIG", "EXPSIG")]
    if "BADSIG" in words:
        return VerificationError("the commit object's signature is BAD: the manifest was altered after signing")
    errsig = [s for s in statuses if s.keyword == "ERRSIG"]
    if errsig:
        args = errsig[0].args
        if (len(args) > 5 and args[5] == "9") or "NO_PUBKEY" in words:
            return UntrustedSigner(_signer_of(statuses), list(trusted))
        return MalformedCommit(
            f"the commit object is malformed or altered: gpg cannot check its signature ({_human_errors(human)})"
        )
    if "REVKEYSIG" in words or "KEYREVOKED" in words:
        return VerificationError("the commit object is signed by a REVOKED key; refused")
    if "EXPSIG" in words:
        return VerificationError("the commit object's signature itself has expired; refused")
    valid = [s for s in statuses if s.keyword == "VALIDSIG"]
    if len(sig_words) != 1 or len(valid) != 1 or len(valid[0].args) < 10:
        if not sig_words:
            return MalformedCommit(f"the commit object carries no signature gpg can read ({_human_errors(human)})")
        return VerificationError(
            f"the commit object does not carry exactly one valid signature ({_human_errors(human)})"
        )
    primary = valid[0].args[9]
    if primary not in trusted:
        return UntrustedSigner(primary, list(trusted))
    if trusted[primary].revoked:
        return VerificationError(f"the commit object is signed by REVOKED key {primary}; refused")
    try:
        with open(out_path, "rb") as f:
            data = f.read()
    except OSError:
        return MalformedCommit("gpg verified the commit object's signature but gave no signed text")
    return Verified(
        data=canonical_text(data),
        fingerprint=primary,
        signed_at=valid[0].args[2],
        key_expired="EXPKEYSIG" in words or trusted[primary].expired,
    )


# ------------------------------------------------------------------------------------- encrypt/decrypt


class _SinkCallback:
    """python-gnupg's ``on_data``: hands each chunk to ``sink`` and never raises.

    Once a callback raises, python-gnupg keeps every later chunk in memory to the end of gpg's
    output (a zlib bomb inflates into the step's memory), so a failure is kept in ``failure``
    instead, later chunks are dropped, and the caller re-raises it when gpg has finished.
    """

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        self.failure: Exception | None = None

    def __call__(self, chunk: bytes) -> bool:
        if chunk and self.failure is None:
            try:
                self._sink(chunk)
            except Exception as e:  # noqa: BLE001 - re-raised by the caller once gpg is done
                self.failure = e
        return False  # tell python-gnupg not to keep the chunk in memory


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
        gpg.on_data = on_data = _SinkCallback(sink)
        if fprs:
            if passphrase is not None:
                args.append("--symmetric")
            result = gpg.encrypt_file(src, fprs, armor=False, passphrase=passphrase, extra_args=args)
        else:
            result = gpg.encrypt_file(
                src, None, symmetric="AES256", armor=False, passphrase=passphrase, extra_args=args
            )
        failure = on_data.failure or getattr(result, "on_data_failure", None)
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
    with gpg_home() as gpg:
        ours, passphrase = _decryption_secret(gpg, keys, use_key)
        gpg.on_data = on_data = _SinkCallback(sink)
        # Without a passphrase gpg would ask gpg-agent's pinentry, which prompts on a terminal.
        no_prompt = [] if passphrase else ["--pinentry-mode", "loopback"]
        result = gpg.decrypt_file(src, passphrase=passphrase or None, extra_args=[*COMMON_ARGS, *no_prompt])
        failure = on_data.failure or getattr(result, "on_data_failure", None)
        if failure is not None:
            raise failure
        statuses = parse_status(result.stderr)
    words = [s.keyword for s in statuses]
    if "BADMDC" in words:
        raise VerificationError("the payload's integrity protection is broken: it was altered in transit")
    if "DECRYPTION_OKAY" in words and "GOODMDC" in words and result.returncode == 0:
        return
    mistake = _key_mistake(statuses, ours, passphrase) if ours is not None else _passphrase_mistake(statuses)
    if mistake is not None:
        raise mistake
    raise VerificationError(
        f"the payload did not decrypt with intact integrity protection ({_human_errors(result.stderr)})"
    )


@dataclass(frozen=True)
class _OurKey:
    """The imported decryption key, for messages: its fingerprint and its subkeys' key ids."""

    fingerprint: str
    subkeys: list[str]


def _decryption_secret(gpg: gnupg.GPG, keys: DecryptKeys, use_key: bool) -> tuple[_OurKey | None, str | None]:
    """(the secret key imported into ``gpg``, None for a passphrase; the passphrase gpg is given)."""
    if not use_key:
        if keys.passphrase is None:
            raise CryptoError(
                "the bundle is encrypted with a passphrase only but no encryption_passphrase is configured"
            )
        return None, keys.passphrase
    if not keys.secret_key:
        raise CryptoError("the bundle is encrypted to recipient keys but no decryption_private_key is configured")
    info = import_secret_key(gpg, keys.secret_key, keys.secret_key_passphrase, "source.decryption_private_key")
    subkeys = [sub[0] for k in gpg.list_keys(True) for sub in k.get("subkeys", [])]
    return _OurKey(info.fingerprint, subkeys), keys.secret_key_passphrase


def _key_mistake(statuses: list[Status], ours: _OurKey, passphrase: str | None) -> CryptoError | None:
    """The configuration mistake that made decryption with the secret key fail, if gpg names one."""
    words = [s.keyword for s in statuses]
    codes = _error_codes(statuses)
    if GPG_ERR_BAD_PASSPHRASE in codes:
        return CryptoError(
            f"source.decryption_private_key_passphrase is wrong for source.decryption_private_key {ours.fingerprint}"
        )
    if not passphrase and ("NEED_PASSPHRASE" in words or GPG_ERR_NO_PIN in codes):
        return CryptoError(
            f"source.decryption_private_key {ours.fingerprint} is protected by a passphrase: "
            "set source.decryption_private_key_passphrase"
        )
    if "NO_SECKEY" in words and "DECRYPTION_KEY" not in words:
        to = sorted({s.args[0] for s in statuses if s.keyword in ("ENC_TO", "NO_SECKEY") and s.args})
        return CryptoError(
            f"the payload is encrypted to key {', '.join(to)}, not to source.decryption_private_key "
            f"{ours.fingerprint} (subkeys {', '.join(ours.subkeys) or 'none'}): configure the secret key "
            "whose public half is in the put side's recipient_public_keys"
        )
    return None


def _passphrase_mistake(statuses: list[Status]) -> CryptoError | None:
    if GPG_ERR_BAD_PASSPHRASE in _error_codes(statuses) or "DECRYPTION_FAILED" in [s.keyword for s in statuses]:
        return CryptoError(
            "the payload does not decrypt with source.encryption_passphrase: it differs from the put side's"
        )
    return None


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
