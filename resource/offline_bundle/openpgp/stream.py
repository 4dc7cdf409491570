"""Payloads through gpg as streams: the tar goes in as gpg reads it, the output comes out in chunks.

Large data never sits in memory: output goes chunk by chunk to a ``sink`` callback. A decryption
is accepted only with intact integrity protection (DECRYPTION_OKAY and GOODMDC).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import gnupg

from offline_bundle.errors import CryptoError, VerificationError
from offline_bundle.openpgp.gpg import (
    CIPHER_ARGS,
    COMMON_ARGS,
    GPG_ERR_BAD_PASSPHRASE,
    GPG_ERR_NO_PIN,
    Status,
    error_codes,
    gpg_home,
    human_errors,
    import_secret_key,
    parse_status,
    usable_recipients,
)


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


def _into_sink(
    gpg: gnupg.GPG, sink: Callable[[bytes], None], run: Callable[[], gnupg.Crypt]
) -> tuple[gnupg.Crypt, list[Status]]:
    """Run one gpg call whose output goes to ``sink``; a sink failure is raised once gpg has finished."""
    gpg.on_data = on_data = _SinkCallback(sink)
    result = run()
    failure = on_data.failure or getattr(result, "on_data_failure", None)
    if failure is not None:
        raise failure
    return result, parse_status(result.stderr)


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
        infos = usable_recipients(gpg, recipients) if recipients else []
        fprs = sorted(k.fingerprint for k in infos)
        comp = (
            ["--compress-algo", "none", "-z", "0"] if compression == "none" else ["--compress-algo", "zlib", "-z", "6"]
        )
        args = [*COMMON_ARGS, *CIPHER_ARGS, *comp]
        if fprs:
            if passphrase is not None:
                args.append("--symmetric")
            result, statuses = _into_sink(
                gpg, sink, lambda: gpg.encrypt_file(src, fprs, armor=False, passphrase=passphrase, extra_args=args)
            )
        else:
            result, statuses = _into_sink(
                gpg,
                sink,
                lambda: gpg.encrypt_file(
                    src, None, symmetric="AES256", armor=False, passphrase=passphrase, extra_args=args
                ),
            )
        words = [s.keyword for s in statuses]
        if "INV_RECP" in words:
            raise CryptoError("a recipient key cannot be used for encryption")
        if result.returncode != 0 or "END_ENCRYPTION" not in words:
            raise CryptoError(f"gpg could not encrypt: {human_errors(result.stderr)}")
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
        # Without a passphrase gpg would ask gpg-agent's pinentry, which prompts on a terminal.
        no_prompt = [] if passphrase else ["--pinentry-mode", "loopback"]
        result, statuses = _into_sink(
            gpg,
            sink,
            lambda: gpg.decrypt_file(src, passphrase=passphrase or None, extra_args=[*COMMON_ARGS, *no_prompt]),
        )
    words = [s.keyword for s in statuses]
    if "BADMDC" in words:
        raise VerificationError("the payload's integrity protection is broken: it was altered in transit")
    if "DECRYPTION_OKAY" in words and "GOODMDC" in words and result.returncode == 0:
        return
    mistake = _key_mistake(statuses, ours, passphrase) if ours is not None else _passphrase_mistake(statuses)
    if mistake is not None:
        raise mistake
    raise VerificationError(
        f"the payload did not decrypt with intact integrity protection ({human_errors(result.stderr)})"
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
    codes = error_codes(statuses)
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
    if GPG_ERR_BAD_PASSPHRASE in error_codes(statuses) or "DECRYPTION_FAILED" in [s.keyword for s in statuses]:
        return CryptoError(
            "the payload does not decrypt with source.encryption_passphrase: it differs from the put side's"
        )
    return None
