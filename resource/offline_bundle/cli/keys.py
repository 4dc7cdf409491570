"""``keygen``: the three kinds of key (sign, decrypt, approve) and the file names the docs use.

The secret half is written with mode 0600 and never echoed; the public half goes to a file and,
alone, to stdout, so ``> FILE`` saves a usable key.
"""

from __future__ import annotations

import argparse
import os

from offline_bundle import openpgp
from offline_bundle.cli.helptext import Subcommands, add_command
from offline_bundle.core.log import Log, Redactor
from offline_bundle.errors import ConfigError, PathError, path_error


def public_key_path(secret_path: str) -> str:
    """Where keygen puts the public key by default: ``sign.key`` -> ``sign.pub.asc``, beside it."""
    base = secret_path[: -len(".key")] if secret_path.endswith(".key") else secret_path
    return base + ".pub.asc"


def cmd_keygen(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    passphrase = None
    if args.passphrase_file:
        try:
            with open(args.passphrase_file, encoding="utf-8") as f:
                passphrase = f.read().rstrip("\n")
        except OSError as e:
            raise path_error(e, args.passphrase_file, "cannot read --passphrase-file") from None
        redact.add([passphrase])
    public_out = args.public_out or public_key_path(args.out)
    for option, path in (("--out", args.out), ("--public-out", public_out)):
        if os.path.lexists(path):
            raise ConfigError(f"{option} {path} exists; refusing to overwrite a key")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise PathError(f"{option} {path}: folder {folder} does not exist or is not writable")
    if os.path.abspath(public_out) == os.path.abspath(args.out):
        raise ConfigError("--public-out must differ from --out")
    uid = args.uid or f"offline-bundle {args.role} key"
    key = openpgp.generate_key(args.role, uid, passphrase, args.expire)
    public = key.public_armored if key.public_armored.endswith("\n") else key.public_armored + "\n"
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.secret_armored)
        fd = os.open(public_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(public)
    except OSError as e:
        raise path_error(e, None, "cannot write the key to") from None
    other = {"sign": "trusted_public_keys", "approve": "approver_public_keys"}.get(args.role, "recipient_public_keys")
    log(f"fingerprint: {key.fingerprint}")
    log(f"secret key written to {args.out} (mode 0600): it stays on this side")
    log(f"public key written to {public_out} (and to stdout): it goes into the other side's {other}")
    print(public, end="")
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "keygen",
        "make a signing (connected side), decryption (air-gapped side) or approver key",
        [
            "offline-bundle keygen --role sign --out sign.key        # on the connected side",
            "offline-bundle keygen --role decrypt --out decrypt.key  # on the air-gapped side",
            "offline-bundle keygen --role approve --out approver.key --passphrase-file pw  # each approver",
        ],
        details="""The secret key goes to --out (mode 0600); the armoured public key to --public-out
and to stdout, alone (`> FILE` saves a usable key); the fingerprint and what to do
next go to stderr.

file names used throughout the documentation:
  connected side:  sign.key         its signing_private_key
                   sign.pub.asc     the air-gapped side's trusted_public_keys
  air-gapped side: decrypt.key      its decryption_private_key
                   decrypt.pub.asc  the connected side's recipient_public_keys
  each approver:   approver.key     kept by the approver (offline-bundle approve --key)
                   approver.pub.asc the sides' approver_public_keys""",
    )
    sp.add_argument("--role", choices=("sign", "decrypt", "approve"), required=True)
    sp.add_argument("--out", required=True, help="file for the secret key (created with mode 0600)")
    sp.add_argument(
        "--public-out",
        metavar="FILE",
        help="file for the public key (default: beside --out, its .key replaced by .pub.asc: sign.key -> sign.pub.asc)",
    )
    sp.add_argument("--uid", help="user id of the key")
    sp.add_argument("--passphrase-file", help="protect the secret key with the passphrase in this file")
    sp.add_argument("--expire", default="0", help="gpg expiry such as 2y (default: never)")
    sp.set_defaults(func=cmd_keygen)
