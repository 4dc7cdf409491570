"""The ``offline-bundle`` command line (docs/reference.md): the same ``source`` keys from a YAML file and env.

Operators run it on both sides of the gap; its commands are thin wrappers over the same Packer
and Unpacker that the Concourse scripts use, with a local folder as an alternative store.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import yaml

from offline_bundle import __version__, openpgp
from offline_bundle.cli.approval import register as register_approvals
from offline_bundle.cli.helptext import add_command, add_verbose
from offline_bundle.cli.transfer import add_commands as add_transfer_commands
from offline_bundle.concourse.protocol import Redactor, failure_exit, install_sigterm_handler
from offline_bundle.concourse.protocol import main as protocol_main
from offline_bundle.core.config import (
    SOURCE_KEYS,
    BuildInfo,
    InParams,
    OutParams,
    PartSpec,
    Source,
    check_destination,
    parse_source,
)
from offline_bundle.core.names import check_name, check_part_name
from offline_bundle.errors import ConfigError, PathError, Terminated, path_error
from offline_bundle.storage.store import S3Store, Store
from offline_bundle.transfer.pieces import MediumStore

ENV_PREFIX = "OFFLINE_BUNDLE_"
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
LOCAL_BUCKET = "local-folder"


def yaml_where(e: yaml.YAMLError) -> str:
    """`` at line L, column C: problem`` from a YAML error (1-based, as editors count); the text
    around the mark is left out, it may be a secret."""
    mark = getattr(e, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or e.__class__.__name__
    return f"{at}: {problem}"


def read_yaml(path: str, option: str) -> Any:
    """A YAML (or JSON) file given with ``option``; errors name the option and the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise path_error(e, path, f"cannot read {option}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{option} {path} is not valid YAML{yaml_where(e)}") from None


def load_config(path: str | None, env: dict[str, str]) -> dict[str, Any]:
    """YAML file first, then ``OFFLINE_BUNDLE_<KEY>`` variables over it."""
    raw: dict[str, Any] = {}
    if path:
        loaded = read_yaml(path, "--config")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path} must hold a map of source keys")
        raw.update(loaded)
    known = {ENV_PREFIX + k.upper() for k in SOURCE_KEYS} | {ENV_PREFIX + "DEBUG", ENV_PREFIX + "S3_RETRIES"}
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise ConfigError(
            f"unknown variable {', '.join(unknown)}; valid: {ENV_PREFIX}<KEY> for the keys {', '.join(SOURCE_KEYS)}"
        )
    for key in SOURCE_KEYS:
        value = env.get(ENV_PREFIX + key.upper())
        if value is None or value == "":
            continue  # an empty variable is an unset one, as an empty source value is an absent one
        if key in (
            "use_path_style",
            "disable_ssl",
            "skip_ssl_verification",
            "allow_unencrypted",
            "allow_unsigned",
        ):
            if value.strip().lower() not in _BOOL_WORDS:
                raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be true or false")
            raw[key] = _BOOL_WORDS[value.strip().lower()]
        else:
            raw[key] = value
    return raw


def source_from(args: argparse.Namespace, *, local: str | None = None) -> Source:
    raw = load_config(args.config, dict(os.environ))
    if local is not None:
        raw.setdefault("bucket", LOCAL_BUCKET)
    return parse_source(raw, where="config")


def existing_folder(path: str, option: str) -> str:
    """A folder to read from must be there: creating it would only turn a typo into "no version"."""
    if len(os.fsencode(os.path.abspath(path))) >= os.pathconf("/", "PC_PATH_MAX"):  # isdir says False for it
        raise PathError(f"{option} {path[:60]}… is a path longer than the file system allows")
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.lexists(path) else "does not exist"
        raise PathError(f"{option} {path} {what}: give the folder that holds the bundle (the medium's mount point)")
    return path


def store_for(source: Source, local: str | None, *, create: bool = False) -> Store:
    # A folder may be a medium written by export (payloads in pieces); MediumStore reads both kinds.
    if local and not create:
        existing_folder(local, "--from-dir")
    return MediumStore(local) if local else S3Store(source)


def _log(redact: Redactor) -> Callable[[str], None]:
    def log(msg: str) -> None:
        sys.stderr.write(redact(msg) + "\n")
        sys.stderr.flush()

    return log


# --------------------------------------------------------------------------------------- commands


def _parts_file(path: str) -> list[tuple[str, str, str]]:
    """A put's ``parts`` list as a file: what ``fetch`` writes as ``parts.json`` (JSON is YAML)."""
    doc = read_yaml(path, "--parts-file")
    if not isinstance(doc, list):
        raise ConfigError(f"--parts-file {path} must hold a list of parts")
    out = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("path"), str):
            raise ConfigError(f"--parts-file {path}: item {i} must be a map with name and path (and destination)")
        out.append((item["name"], item["path"], str(item.get("destination") or "")))
    return out


def cmd_pack(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor) -> int:
    from offline_bundle.bundle.pack import Packer

    source = source_from(args, local=args.to_dir)
    redact.add(source.secret_values())
    parts = []
    seen = set()
    specs: list[tuple[str, str, str]] = []
    for spec in args.part or ():
        name, sep, rest = spec.partition("=")
        if not sep or not rest:
            raise ConfigError(f"--part {spec!r} must be NAME=PATH or NAME=PATH=DESTINATION")
        path, _, dest = rest.partition("=")
        specs.append((name, path, dest))
    for f in args.parts_file or ():
        specs += _parts_file(f)
    if not specs:
        raise ConfigError("give the parts with --part NAME=PATH[=DEST] or --parts-file FILE")
    for name, path, dest in specs:
        name = check_part_name(name)
        if name.casefold() in seen:  # one folder on a case-insensitive destination
            raise ConfigError(f"--part {name} is given twice (names differing only in case count as one)")
        seen.add(name.casefold())
        parts.append(PartSpec(name, path, check_destination(dest or name + "/", f"--part {name} destination")))
    if args.version:
        check_name(args.version, "--version")
    params = OutParams(parts=tuple(parts), version=args.version, overwrite=args.overwrite)
    build = BuildInfo.from_env(dict(os.environ))
    result = Packer(source, store_for(source, args.to_dir, create=True), log).put(params, args.base, build)
    m = result.manifest
    print(f"{m.name} {m.version}: {len(m.parts)} part(s), {m.file_count} entries, {m.total_bytes} bytes")
    print(f"uploaded: {', '.join(result.uploaded) or 'none'}; reused: {', '.join(result.reused) or 'none'}")
    print(f"signer: {result.signer or 'UNSIGNED'}")
    return 0


def _get(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor, dest: str | None) -> Any:
    from offline_bundle.bundle.commit import latest_version
    from offline_bundle.bundle.unpack import Unpacker

    source = source_from(args, local=args.from_dir)
    redact.add(source.secret_values())
    store = store_for(source, args.from_dir)
    version = args.version or latest_version(source, store, log)
    params = InParams(parts=tuple(check_part_name(p) for p in args.part) if args.part else None)
    return Unpacker(source, store, log).get(version, params, dest, record=dest is not None)


def cmd_verify(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor) -> int:
    result = _get(args, log, redact, None)
    m = result.trusted.manifest
    print(
        f"OK {m.name} {m.version}: signer {result.trusted.signer or 'UNSIGNED'}"
        f"{' (key expired since)' if result.trusted.signer_expired else ''}; "
        f"{len(result.parts)} part(s), {result.files} files, {result.bytes} bytes verified"
    )
    return 0


def cmd_unpack(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor) -> int:
    result = _get(args, log, redact, args.dest)
    m = result.trusted.manifest
    print(f"{m.name} {m.version} -> {args.dest}: {', '.join(result.parts) or 'no parts'} ({result.files} files)")
    return 0


def cmd_show(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor) -> int:
    from offline_bundle.bundle.commit import latest_version, payload_object_key, read_commit
    from offline_bundle.core.progress import human

    source = source_from(args, local=args.from_dir)
    redact.add(source.secret_values())
    store = store_for(source, args.from_dir)
    version = args.version or latest_version(source, store, log)
    trusted = read_commit(source, store, version)
    m = trusted.manifest
    print(f"bundle   {m.name}")
    print(f"version  {m.version}")
    creator = BuildInfo(m.created_by or {}).describe()
    print(f"created  {m.created_at} by {creator} with {m.tool.get('name')} {m.tool.get('version')}")
    print(f"signer   {trusted.signer or 'UNSIGNED'}{' (key expired since)' if trusted.signer_expired else ''}")
    for p in m.parts:
        enc = p.encryption
        how = (
            ", ".join([*(f"key {r}" for r in enc.recipients), *(["passphrase"] if enc.passphrase else [])])
            or "not encrypted"
        )
        count = sum(1 for f in p.files if f.type == "file")
        print(f"part {p.name} -> {p.destination}  ({human(p.bytes)} in {count} files; {how})")
        where = payload_object_key(source, p.payload)
        print(f"  payload {where} {p.payload.size} bytes sha256 {p.payload.sha256}")
        if args.files:
            for f in p.files:
                extra = (
                    f" -> {f.target}"
                    if f.type == "symlink"
                    else f"  {f.size:>12}  {f.sha256}"
                    if f.type == "file"
                    else "/"
                )
                print(f"  {f.mode:04o} {f.path}{extra}")
    return 0


def cmd_list(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor) -> int:
    from offline_bundle.bundle.commit import committed_versions

    source = source_from(args, local=args.from_dir)
    redact.add(source.secret_values())
    store = store_for(source, args.from_dir)
    for t in committed_versions(source, store, log, untrusted_is_error=True):
        print(f"{t.manifest.version}\t{t.manifest.created_at}")
    return 0


def cmd_prune(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor) -> int:
    from datetime import timedelta

    from offline_bundle.bundle.prune import prune

    source = source_from(args, local=args.from_dir)
    redact.add(source.secret_values())
    store = store_for(source, args.from_dir)
    result = prune(source, store, args.keep, log, grace=timedelta(hours=args.grace_hours), dry_run=args.dry_run)
    what = "would delete" if args.dry_run else "deleted"
    print(
        f"kept {len(result.kept)} version(s); {what} {len(result.deleted_versions)} version(s), "
        f"{len(result.deleted_payloads)} payload object(s); {result.aborted_uploads} incomplete upload(s)"
    )
    return 0


def public_key_path(secret_path: str) -> str:
    """Where keygen puts the public key by default: ``sign.key`` -> ``sign.pub.asc``, beside it."""
    base = secret_path[: -len(".key")] if secret_path.endswith(".key") else secret_path
    return base + ".pub.asc"


def cmd_keygen(args: argparse.Namespace, log: Callable[[str], None], redact: Redactor) -> int:
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


# ------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offline-bundle",
        description="Signed, encrypted bundles across an air gap through S3-compatible stores.",
        epilog=(
            "example:\n"
            "  offline-bundle pack --config connected.yml --part tiles='tiles/*.pivotal' --version 1.0.0\n"
            "  offline-bundle export --config connected.yml --to /media/usb\n"
            "  offline-bundle import --config airgapped.yml --from /media/usb\n\n"
            "Every command has its own help: offline-bundle COMMAND --help"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"offline-bundle {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            metavar="FILE",
            help="YAML file of source keys (OFFLINE_BUNDLE_<KEY> variables override)",
        )

    def with_read(sp: argparse.ArgumentParser) -> None:
        with_config(sp)
        sp.add_argument("--from-dir", metavar="DIR", help="read the bundle from a local folder in the bucket layout")
        sp.add_argument("--version", dest="version", metavar="V", help="bundle version (default: the latest)")

    sp = add_command(
        sub,
        "pack",
        "pack local paths into a bundle (S3, or a local folder)",
        [
            "offline-bundle pack --config connected.yml --base build --part ops-manager=ops-manager \\",
            "    --part stemcells='stemcells/*.tgz=stemcells/' --version 1.0.0",
            "# the parts fetch listed, into a folder on removable media",
            "offline-bundle pack --config connected.yml --parts-file fetched/parts.json --to-dir /media/usb",
        ],
        details="Signed with signing_private_key, encrypted to recipient_public_keys (or a passphrase).",
    )
    with_config(sp)
    sp.add_argument(
        "--part",
        action="append",
        metavar="NAME=PATH[=DEST]",
        help="a part: glob PATH under --base, published under DEST (default NAME/); repeat for each part",
    )
    sp.add_argument(
        "--parts-file",
        action="append",
        metavar="FILE",
        help="parts as a JSON/YAML list of {name, path, destination} (fetch's parts.json); repeatable",
    )
    sp.add_argument("--base", default=".", help="folder the part paths are relative to (default: .)")
    sp.add_argument("--version", dest="version", help="bundle version (default: a UTC timestamp)")
    sp.add_argument("--to-dir", metavar="DIR", help="write the bundle to a local folder instead of S3")
    sp.add_argument("--overwrite", action="store_true", help="replace a committed version with other content")
    sp.set_defaults(func=cmd_pack)

    sp = add_command(
        sub,
        "verify",
        "verify signature, payload hashes and every file; writes nothing",
        [
            "offline-bundle verify --config airgapped.yml --version 1.0.0",
            "offline-bundle verify --config airgapped.yml --from-dir /media/usb",
        ],
        details="Exit status 0 only when everything verified.",
    )
    with_read(sp)
    sp.add_argument("--part", action="append", metavar="NAME", help="verify only this part (repeat for more)")
    sp.set_defaults(func=cmd_verify)

    sp = add_command(
        sub,
        "unpack",
        "verify and explode a bundle into DEST (the layout of `in`)",
        [
            "offline-bundle unpack --config airgapped.yml --version 1.0.0 ./exploded",
            "offline-bundle unpack --config airgapped.yml --from-dir /media/usb --part pipelines ./exploded",
        ],
    )
    with_read(sp)
    add_verbose(sp)
    sp.add_argument("--part", action="append", metavar="NAME", help="fetch only this part (repeat for more)")
    sp.add_argument("dest", metavar="DEST")
    sp.set_defaults(func=cmd_unpack)

    sp = add_command(
        sub,
        "show",
        "the signed manifest as a listing, without decrypting",
        ["offline-bundle show --config airgapped.yml --files"],
    )
    with_read(sp)
    sp.add_argument("--files", action="store_true", help="list every file")
    sp.set_defaults(func=cmd_show)

    sp = add_command(
        sub,
        "list",
        "committed versions, oldest first (version_order)",
        ["offline-bundle list --config airgapped.yml"],
    )
    with_config(sp)
    sp.add_argument("--from-dir", metavar="DIR", help="a local folder in the bucket layout")
    sp.set_defaults(func=cmd_list)

    sp = add_command(
        sub,
        "prune",
        "delete old versions, unreferenced payloads and stale multipart uploads",
        ["offline-bundle prune --config connected.yml --keep 5 --dry-run"],
    )
    with_config(sp)
    sp.add_argument("--from-dir", metavar="DIR", help="a local folder in the bucket layout")
    sp.add_argument("--keep", type=int, required=True, metavar="N", help="keep the newest N versions (version_order)")
    sp.add_argument(
        "--grace-hours",
        type=float,
        default=24,
        help="leave payloads and uploads younger than this alone: a running put may still need them (default 24)",
    )
    sp.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    sp.set_defaults(func=cmd_prune)

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

    add_transfer_commands(sub, with_config)
    register_approvals(sub, with_config)

    from offline_bundle.cli.pin import register as register_pin
    from offline_bundle.lint.pipeline import register as register_lint
    from offline_bundle.publish.objects import register as register_publish

    register_publish(sub)
    register_lint(sub)
    register_pin(sub)

    for name, what, example in (
        ("check", "list versions", "offline-bundle check < request.json"),
        ("in", "fetch a version into DIR", "offline-bundle in ./dest < request.json"),
        ("out", "put from DIR", "offline-bundle out ./build < request.json"),
    ):
        sp = add_command(
            sub,
            name,
            f"the Concourse {name} script ({what}); request JSON on stdin",
            [example],
            details='The request is what Concourse sends: {"source": {...}, "version": ..., "params": {...}}.',
        )
        sp.add_argument("directory", nargs="*")
        sp.set_defaults(func=None, protocol=name)
    return p


def main(argv: list[str] | None = None) -> int:
    install_sigterm_handler()
    args = build_parser().parse_args(argv)
    if args.func is None:
        return protocol_main(args.protocol, args.directory)
    from offline_bundle.bundle.records import print_record_json

    print_record_json(bool(getattr(args, "verbose", False)))
    redact = Redactor()
    log = _log(redact)
    try:
        return args.func(args, log, redact)
    except (Exception, KeyboardInterrupt, Terminated) as e:  # noqa: BLE001 - one line, never a traceback
        return failure_exit(e, log)


if __name__ == "__main__":
    sys.exit(main())
