"""``offline-bundle diff`` and ``approve``: what a reviewer runs to let a version cross.

Both read only commit objects and approval objects, never payloads, so an approver needs neither
CI's credentials nor the decryption key: read access to the connected bucket (or the medium that
carries the bundle) and write access for the approval object are enough.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from offline_bundle import openpgp
from offline_bundle.bundle.approvals import (
    COMMENT_MAX,
    ApprovalRejected,
    approval_key,
    count_approvals,
    evaluate,
    load_approver_key,
    make_statement,
    short,
    sign_statement,
)
from offline_bundle.bundle.commit import Trusted, read_commit, verified_listing
from offline_bundle.bundle.diff import diff_manifests, to_json_text, to_text
from offline_bundle.bundle.records import write_record
from offline_bundle.cli.common import source_and_store
from offline_bundle.cli.helptext import Subcommands, add_command, add_verbose, with_store
from offline_bundle.core.config import Source
from offline_bundle.core.log import Log, Redactor
from offline_bundle.core.names import check_name
from offline_bundle.errors import BundleError, ConfigError
from offline_bundle.storage.base import Store


def base_version(source: Source, store: Store, version: str) -> str | None:
    """What ``version`` is compared with: the newest approved version before it, else the one just before.

    "Approved" means it has ``required_approvals`` (at least one) approvals that count; without
    approver keys configured nothing is approved and the version just before is the base.
    """
    # Verified versions only, in the signed order: a carrier's junk or replay is never a base.
    ordered = [t.manifest.version for t in verified_listing(source, store, lambda _msg: None).versions]
    if version not in ordered:
        raise BundleError(f"version {version} of bundle {source.name} is not committed in {store.description}")
    earlier = ordered[: ordered.index(version)]
    if source.approver_public_keys:
        for v in reversed(earlier):
            try:
                trusted = read_commit(source, store, v)
            except BundleError:
                continue  # a version that does not verify is no base to review against
            status = count_approvals(source, store, trusted, lambda _msg: None)
            if len(status.approvers) >= max(1, source.required_approvals):
                return v
    return earlier[-1] if earlier else None


def cmd_diff(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    if len(args.versions) > 2:
        raise ConfigError("usage: diff [OLD] NEW (at most two versions)")
    versions = [check_name(v, "version") for v in args.versions]
    source, store = source_and_store(args, redact)
    new = read_commit(source, store, versions[-1])
    base = versions[0] if len(versions) == 2 else base_version(source, store, versions[-1])
    if base is not None and len(versions) == 1:
        log(f"comparing {versions[-1]} with {base} (the newest approved version before it, else the one before)")
    old = read_commit(source, store, base) if base is not None else None
    d = diff_manifests(old, new)
    if args.json:
        print(to_json_text(d))
    else:
        for line in to_text(d):
            print(line)
    return 0


def _passphrase(args: argparse.Namespace, redact: Redactor) -> str | None:
    """The approver key's passphrase from a file or a named variable: never an argument (ps shows those)."""
    if args.passphrase_file and args.passphrase_env:
        raise ConfigError("give --passphrase-file or --passphrase-env, not both")
    value: str | None = None
    if args.passphrase_file:
        try:
            with open(args.passphrase_file, encoding="utf-8") as f:
                value = f.read().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"--passphrase-file {args.passphrase_file}: {e.strerror}") from None
    elif args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if not value:
            raise ConfigError(f"--passphrase-env {args.passphrase_env}: that variable is not set or empty")
    if value:
        redact.add([value])
    return value or None


def _approver_fingerprints(source: Source) -> set[str]:
    with openpgp.gpg_home() as gpg:
        return {k.fingerprint for k in openpgp.import_public_keys(gpg, source.approver_public_keys, "approver keys")}


def _confirm(trusted: Trusted, fingerprint: str, sha256: str) -> None:
    m = trusted.manifest
    sys.stderr.write(
        f"Approve {m.name} {m.version} (manifest sha256 {sha256}) with key {fingerprint}? Type yes to approve: "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("yes", "y"):
        raise BundleError(f"not approved (the answer was not yes); nothing was written for {m.name} {m.version}")


def cmd_approve(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    # Refuse before anything else: an approval nobody confirmed must never be written by accident.
    if not args.yes and not sys.stdin.isatty():
        raise ConfigError(
            "approve asks for confirmation on a terminal and stdin is not one: run it in a terminal, "
            "or pass --yes to approve from a script"
        )
    version = check_name(args.version, "VERSION")
    source, store = source_and_store(args, redact)
    passphrase = _passphrase(args, redact)
    key = load_approver_key(args.key, passphrase)
    trusted = read_commit(source, store, version)  # the same verification as `in`
    if trusted.signer == key.fingerprint:
        raise ConfigError(
            f"--key {args.key} is the key that signed {source.name} {version}: "
            "the two-person rule needs a second person's key"
        )
    if source.approver_public_keys and key.fingerprint not in _approver_fingerprints(source):
        raise ConfigError(
            f"--key {args.key} ({key.fingerprint}) is not among approver_public_keys: "
            "its approval would not count; add its public key there first"
        )
    base = base_version(source, store, version)
    old = read_commit(source, store, base) if base is not None else None
    for line in to_text(diff_manifests(old, trusted)):
        print(line)
    status = count_approvals(source, store, trusted, log)
    if status.approvers:
        print(f"approved so far by: {', '.join(status.approvers)}")
    statement = make_statement(trusted, key.fingerprint, args.comment)
    sys.stdout.flush()
    if not args.yes:
        _confirm(trusted, key.fingerprint, statement.manifest_sha256)
    signed = sign_statement(statement, key, f"--key {args.key}")
    own = dataclasses.replace(source, approver_public_keys=(openpgp.public_key_of(key.secret_armored, passphrase),))
    counted, ignored = evaluate(own, trusted, [("new approval", signed)])
    if key.fingerprint not in counted:  # cannot happen unless gpg signed something else than asked
        raise ApprovalRejected(f"the approval just signed does not verify: {ignored[0][1] if ignored else '?'}")
    target = approval_key(source, version, key.fingerprint)
    store.put_bytes(target, signed)
    write_record(
        store,
        source,
        "approve",
        trusted.manifest,
        signer=trusted.signer,
        log=log,
        details={
            "approver": key.fingerprint,
            "manifest_sha256": statement.manifest_sha256,
            "approved_at": statement.approved_at,
            "comment": statement.comment,
            "object": target,
            "compared_with": base,
        },
    )
    print(f"approved {source.name} {version} as {key.fingerprint} ({short(key.fingerprint)}): {target}")
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``diff`` and ``approve`` to the ``offline-bundle`` command line."""
    sp = add_command(
        sub,
        "diff",
        "what changed between two versions, from their signed manifests (nothing decrypted)",
        [
            "offline-bundle diff --config review.yml 1.1.0 1.2.0",
            "# NEW alone: against the newest approved version before it",
            "offline-bundle diff --config review.yml --json 1.2.0",
            "offline-bundle diff --config review.yml --from-dir /media/usb 1.2.0",
        ],
        details=(
            "Parts and files added, removed and changed (path, size, SHA-256, mode), payloads reused, and\n"
            "who signed and built each version. With NEW alone, NEW is compared with the newest version\n"
            "approved before it, or the one just before it when none is approved."
        ),
    )
    with_store(sp, "read the bundle from a local folder or medium")
    sp.add_argument("--json", action="store_true", help="the diff as one JSON document")
    sp.add_argument("versions", nargs="+", metavar="[OLD] NEW")
    sp.set_defaults(func=cmd_diff)

    sp = add_command(
        sub,
        "approve",
        "review a version's diff and sign an approval of its exact manifest (two-person rule)",
        [
            "offline-bundle approve --config review.yml 1.2.0 --key approver.key --passphrase-file pw",
            "offline-bundle approve --config review.yml --from-dir /media/usb 1.2.0 --key approver.key \\",
            "    --passphrase-env APPROVER_PASSPHRASE --comment 'CHG-1234' --yes",
        ],
        details=(
            "Verifies VERSION as `in` does, shows its diff, asks for confirmation on the terminal, then writes\n"
            "a clear-signed approval to <prefix><name>/<VERSION>/approvals/<fingerprint>.asc in the bucket\n"
            "(or in --from-dir). It binds the bundle, the version and the SHA-256 of the exact signed\n"
            "manifest. Needs no decryption key and no CI credentials; export/import or mirror carry it."
        ),
    )
    with_store(sp, "the bundle is in a local folder or on a medium")
    sp.add_argument(
        "--key", required=True, metavar="APPROVER.key", help="the approver's secret key (keygen --role approve)"
    )
    sp.add_argument("--passphrase-file", metavar="FILE", help="file holding the key's passphrase")
    sp.add_argument(
        "--passphrase-env", metavar="VAR", help="name of the environment variable holding the key's passphrase"
    )
    sp.add_argument("--comment", help=f"a note kept in the signed approval (at most {COMMENT_MAX} characters)")
    sp.add_argument("--yes", action="store_true", help="approve without asking (scripts); the diff is still printed")
    add_verbose(sp)
    sp.add_argument("version", metavar="VERSION")
    sp.set_defaults(func=cmd_approve)
