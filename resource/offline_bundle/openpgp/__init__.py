"""OpenPGP through python-gnupg over the real ``gpg``, each operation in a throwaway ``GNUPGHOME``.

Why a throwaway home: the keyring then holds exactly the keys the ``source`` names, so a
signature can only verify against a trusted key, no ownertrust is ever set, and nothing of a
secret key outlives the step. Decisions are read from gpg's machine status lines (VALIDSIG with
the primary fingerprint, DECRYPTION_OKAY, GOODMDC), never from its human text or exit code alone.
Large data never sits in memory: output goes chunk by chunk to a ``sink`` callback.

``gpg`` runs gpg and holds the keys, ``signed`` makes and checks clear-signed messages, ``stream``
encrypts and decrypts payloads; callers use the names gathered here.
"""

from offline_bundle.openpgp.gpg import (
    COMMON_ARGS,
    GPG_ERR_BAD_PASSPHRASE,
    GPG_ERR_NO_PIN,
    PIPE_BYTES,
    SIGNED_HEADER,
    KeyInfo,
    error_codes,
    generate_key,
    gpg_home,
    human_errors,
    import_public_keys,
    import_secret_key,
    parse_status,
    public_key_of,
    recipient_fingerprints,
)
from offline_bundle.openpgp.signed import (
    ClearsignVerifier,
    UntrustedSigner,
    Verified,
    clearsign,
    in_place,
    signature_fault,
    valid_signature,
    verify_clearsigned,
    verify_clearsigned_many,
)
from offline_bundle.openpgp.stream import DecryptKeys, decrypt_stream, encrypt_stream

__all__ = [
    "COMMON_ARGS",
    "GPG_ERR_BAD_PASSPHRASE",
    "GPG_ERR_NO_PIN",
    "PIPE_BYTES",
    "SIGNED_HEADER",
    "ClearsignVerifier",
    "DecryptKeys",
    "KeyInfo",
    "UntrustedSigner",
    "Verified",
    "clearsign",
    "decrypt_stream",
    "encrypt_stream",
    "error_codes",
    "generate_key",
    "gpg_home",
    "human_errors",
    "in_place",
    "import_public_keys",
    "import_secret_key",
    "parse_status",
    "public_key_of",
    "signature_fault",
    "valid_signature",
    "recipient_fingerprints",
    "verify_clearsigned",
    "verify_clearsigned_many",
]
