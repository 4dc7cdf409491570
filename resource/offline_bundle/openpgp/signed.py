"""Clear-signed messages: the commit object and approval statements are signed and checked here.

Only a message that is exactly one clear-signed block counts (``check_clearsigned_form``), and a
signature counts only from a key in the trusted list, read from VALIDSIG's primary fingerprint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

import gnupg

from offline_bundle.errors import CryptoError, VerificationError
from offline_bundle.openpgp.gpg import (
    COMMON_ARGS,
    GPG_ERR_BAD_PASSPHRASE,
    GPG_ERR_NO_PIN,
    SIGNED_HEADER,
    KeyInfo,
    Status,
    error_codes,
    gpg_home,
    human_errors,
    import_public_keys,
    import_secret_key,
    parse_status,
)


def clearsign(data: bytes | Iterable[bytes], secret_armored: str, passphrase: str | None) -> tuple[bytes, str]:
    """Clear-sign ``data`` (bytes, or the pieces they are made of); returns the signed message and the
    signer's primary fingerprint.

    The text goes to gpg through a file in its throwaway home and the signed message comes back
    through another: python-gnupg would keep gpg's output in memory twice (its chunks and their
    join), and pieces are never joined here: for 100,000 files the manifest alone is 17 MB.
    """
    with gpg_home() as gpg:
        info = import_secret_key(gpg, secret_armored, passphrase, "source.signing_private_key")
        if info.revoked or info.expired:
            raise CryptoError(
                f"source.signing_private_key {info.fingerprint} is {'revoked' if info.revoked else 'expired'}"
            )
        if "S" not in info.capabilities:
            raise CryptoError(f"source.signing_private_key {info.fingerprint} cannot sign")
        plain, out = os.path.join(gpg.gnupghome, "text"), os.path.join(gpg.gnupghome, "text.asc")
        with open(plain, "wb") as f:
            f.writelines([data] if isinstance(data, bytes) else data)
        # An open file, not its path: python-gnupg closes a file it opened itself 10 ms after starting
        # to copy it into gpg, which then signs whatever was copied by then.
        with open(plain, "rb") as text:
            result = gpg.sign_file(
                text,
                keyid=info.fingerprint,
                passphrase=passphrase if passphrase else None,
                clearsign=True,
                binary=True,
                output=out,
                # Without a passphrase gpg would ask gpg-agent's pinentry, which prompts on a terminal.
                extra_args=["--digest-algo", "SHA256", *([] if passphrase else ["--pinentry-mode", "loopback"])],
            )
        statuses = parse_status(result.stderr)
        signed = _read_if_any(out)
        if not any(s.keyword == "SIG_CREATED" for s in statuses) or not signed:
            codes = error_codes(statuses)
            if GPG_ERR_BAD_PASSPHRASE in codes:
                raise CryptoError("source.signing_private_key_passphrase is wrong for source.signing_private_key")
            if GPG_ERR_NO_PIN in codes or (not passphrase and "NEED_PASSPHRASE" in [s.keyword for s in statuses]):
                raise CryptoError(
                    f"source.signing_private_key {info.fingerprint} is protected by a passphrase: "
                    "set source.signing_private_key_passphrase"
                )
            raise CryptoError(f"signing failed: {human_errors(result.stderr)}")
        if "longer than" in result.stderr or not _carries_file(signed, plain):
            raise CryptoError("gpg did not sign the manifest whole (a line too long for clear-signing?)")
        return signed, info.fingerprint


def _read_if_any(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


COMPARE_CHUNK = 1 << 20


def _carries_file(message: bytes, path: str) -> bool:
    """``_carries(message, text)`` for the text in file ``path`` (its final line breaks aside).

    In the common case (see ``_carries``) the file is compared in chunks with the message in place,
    never read whole.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        while size > 0:  # the text's length without its final line breaks
            f.seek(size - 1)
            if f.read(1) != b"\n":
                break
            size -= 1
        region = _plain_region(message)
        if region is None:
            f.seek(0)
            return _carries(message, f.read(size))
        if len(region) != size:
            return False
        f.seek(0)
        for at in range(0, size, COMPARE_CHUNK):
            if region[at : at + COMPARE_CHUNK] != f.read(min(COMPARE_CHUNK, size - at)):
                return False
        return True


def _plain_region(message: bytes) -> memoryview | None:
    """The signed text inside a clear-signed ``message`` as it stands, when nothing in it is escaped
    (no dash-escaped line, no CRLF); None otherwise, or when the message is malformed."""
    start = message.find(b"\n\n")
    end = message.find(b"\n-----BEGIN PGP SIGNATURE-----", start + 1)
    if not message.startswith(SIGNED_HEADER) or start < 0 or end < 0:
        return None
    plain = message.find(b"\r\n", start, end) < 0 and message.find(b"\n- ", start, end) < 0
    if plain and not message.startswith(b"- ", start + 2):
        return memoryview(message)[start + 2 : end]
    return None


def _carries(message: bytes, text: bytes) -> bool:
    """Whether clear-signed ``message`` carries ``text`` exactly.

    A manifest can be tens of MiB: the common case (no dash-escaped line, no CRLF) is compared in
    place; taking the message apart line by line made five copies of it (400 MiB for 60 MB).
    """
    region = _plain_region(message)
    if region is not None:
        return region == text
    return _signed_text(message) == text


def in_place(message: bytes, text: bytes) -> bytes | memoryview:
    """``text`` (what gpg verified in ``message``), or the very same bytes where ``message`` holds them
    as they stand: then the caller may let gpg's copy go (a manifest of 100,000 files is 17 MB)."""
    region = _plain_region(message)
    return region if region is not None and region == text else text


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


def _has_line_end_blanks(text: bytes) -> bool:
    """Whether any line of ``text`` ends in a blank, a tab or a carriage return."""
    return b"\r" in text or b" \n" in text or b"\t\n" in text or text.endswith((b" ", b"\t"))


def canonical_text(signed: bytes) -> bytes:
    """The signed text as OpenPGP defines it, written with LF line ends.

    A clear signature covers lines, not their ends: it is computed over CRLF-ended lines with
    trailing blanks removed (RFC 4880 section 7.1), so a commit object converted to CRLF, or with
    blanks appended, still verifies. Two objects with valid signatures over the same statement
    give the same bytes here; LF is what the writer signs (compact JSON never ends a line in a blank).
    Text with nothing to remove (what the writer signs) is only cut before its last line break: split
    into lines, a manifest of 100,000 files took 18 MB more for the moment.
    """
    if not _has_line_end_blanks(signed):
        return signed[:-1] if signed.endswith(b"\n") else signed
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


_SIGNATURE_WORDS = ("GOODSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "ERRSIG", "EXPSIG")


def signature_fault(statuses: list[Status]) -> str | None:
    """What speaks against a message carrying exactly one good signature, in the order every verifier
    weighs gpg's status lines; None when it does, its VALIDSIG then names the primary key.

    ``bad`` (altered after signing), ``unchecked`` (ERRSIG or NO_PUBKEY: an unknown key or a malformed
    signature), ``revoked``, ``expired`` (the signature itself), ``none`` (no signature gpg can read),
    ``not one`` (several, or no usable VALIDSIG). Each verifier words these for what it checks.
    """
    words = [s.keyword for s in statuses]
    signatures = [w for w in words if w in _SIGNATURE_WORDS]
    valid = [s for s in statuses if s.keyword == "VALIDSIG"]
    checks = (
        ("bad", "BADSIG" in words),
        ("unchecked", "ERRSIG" in words or "NO_PUBKEY" in words),
        ("revoked", "REVKEYSIG" in words or "KEYREVOKED" in words),
        ("expired", "EXPSIG" in words),
        ("none", not signatures),
        ("not one", len(signatures) != 1 or len(valid) != 1 or len(valid[0].args) < 10),
    )
    return next((fault for fault, found in checks if found), None)


def valid_signature(statuses: list[Status]) -> Status:
    """The one VALIDSIG line, once ``signature_fault`` found nothing: args[9] is the primary fingerprint."""
    return next(s for s in statuses if s.keyword == "VALIDSIG")


_COMMIT_FAULTS = {
    "bad": "the commit object's signature is BAD: the manifest was altered after signing",
    "revoked": "the commit object is signed by a REVOKED key; refused",
    "expired": "the commit object's signature itself has expired; refused",
    "not one": "the commit object does not carry exactly one valid signature ({human})",
}


def _judge(
    statuses: list[Status], human: str, out_path: str, trusted: dict[str, KeyInfo]
) -> Verified | VerificationError:
    """gpg's verdict on one commit object, from its status lines only."""
    words = [s.keyword for s in statuses]
    fault = signature_fault(statuses)
    if fault == "unchecked":
        errsig = [s.args for s in statuses if s.keyword == "ERRSIG"]
        if (errsig and len(errsig[0]) > 5 and errsig[0][5] == "9") or "NO_PUBKEY" in words:
            return UntrustedSigner(_signer_of(statuses), list(trusted))
        return MalformedCommit(
            f"the commit object is malformed or altered: gpg cannot check its signature ({human_errors(human)})"
        )
    if fault == "none":
        return MalformedCommit(f"the commit object carries no signature gpg can read ({human_errors(human)})")
    if fault is not None:
        return VerificationError(_COMMIT_FAULTS[fault].format(human=human_errors(human)))
    valid = valid_signature(statuses)
    primary = valid.args[9]
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
        signed_at=valid.args[2],
        key_expired="EXPKEYSIG" in words or trusted[primary].expired,
    )
