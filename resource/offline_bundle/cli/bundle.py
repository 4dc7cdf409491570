"""The commands on one bundle: ``pack``, ``verify``, ``unpack``, ``show``, ``list`` and ``prune``.

Thin: each parses its options, builds the store (S3, or a folder with ``--to-dir``/``--from-dir``)
and runs the same Packer, Unpacker and commit readers the Concourse scripts run; results go to
stdout, logs and progress to stderr.
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from typing import Any

from offline_bundle.bundle.commit import latest_version, payload_object_key, read_commit, verified_listing
from offline_bundle.bundle.pack import Packer
from offline_bundle.bundle.prune import prune
from offline_bundle.bundle.unpack import Unpacker
from offline_bundle.cli.common import read_yaml, source_and_store, source_from, store_for
from offline_bundle.cli.helptext import (
    Subcommands,
    add_command,
    add_verbose,
    with_config,
    with_part,
    with_read,
    with_store,
)
from offline_bundle.core.config import BuildInfo, InParams, OutParams, PartSpec, check_destination
from offline_bundle.core.log import Log, Redactor
from offline_bundle.core.names import check_name, check_part_name
from offline_bundle.core.progress import human
from offline_bundle.errors import ConfigError


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


def cmd_pack(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
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


def _get(args: argparse.Namespace, log: Log, redact: Redactor, dest: str | None) -> Any:
    source, store = source_and_store(args, redact)
    version = args.version or latest_version(source, store, log)
    params = InParams(parts=tuple(check_part_name(p) for p in args.part) if args.part else None)
    return Unpacker(source, store, log).get(version, params, dest, record=dest is not None)


def cmd_verify(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    result = _get(args, log, redact, None)
    m = result.trusted.manifest
    print(
        f"OK {m.name} {m.version}: signer {result.trusted.signer or 'UNSIGNED'}"
        f"{' (key expired since)' if result.trusted.signer_expired else ''}; "
        f"{len(result.parts)} part(s), {result.files} files, {result.bytes} bytes verified"
    )
    return 0


def cmd_unpack(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    result = _get(args, log, redact, args.dest)
    m = result.trusted.manifest
    print(f"{m.name} {m.version} -> {args.dest}: {', '.join(result.parts) or 'no parts'} ({result.files} files)")
    return 0


def cmd_show(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    source, store = source_and_store(args, redact)
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


def cmd_list(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    source, store = source_and_store(args, redact)
    for t in verified_listing(source, store, log, untrusted_is_error=True).versions:
        print(f"{t.manifest.version}\t{t.manifest.created_at}")
    return 0


def cmd_prune(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    source, store = source_and_store(args, redact)
    result = prune(source, store, args.keep, log, grace=timedelta(hours=args.grace_hours), dry_run=args.dry_run)
    what = "would delete" if args.dry_run else "deleted"
    print(
        f"kept {len(result.kept)} version(s); {what} {len(result.deleted_versions)} version(s), "
        f"{len(result.deleted_payloads)} payload object(s); {result.aborted_uploads} incomplete upload(s)"
    )
    return 0


# ------------------------------------------------------------------------------------------ parser


def register_pack(sub: Subcommands[argparse.ArgumentParser]) -> None:
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


def register_verify(sub: Subcommands[argparse.ArgumentParser]) -> None:
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
    with_part(sp, "verify")
    sp.set_defaults(func=cmd_verify)


def register_unpack(sub: Subcommands[argparse.ArgumentParser]) -> None:
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
    with_part(sp, "fetch")
    sp.add_argument("dest", metavar="DEST")
    sp.set_defaults(func=cmd_unpack)


def register_show(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "show",
        "the signed manifest as a listing, without decrypting",
        ["offline-bundle show --config airgapped.yml --files"],
    )
    with_read(sp)
    sp.add_argument("--files", action="store_true", help="list every file")
    sp.set_defaults(func=cmd_show)


def register_list(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "list",
        "committed versions, oldest first (version_order)",
        ["offline-bundle list --config airgapped.yml"],
    )
    with_store(sp)
    sp.set_defaults(func=cmd_list)


def register_prune(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "prune",
        "delete old versions, unreferenced payloads and stale multipart uploads",
        ["offline-bundle prune --config connected.yml --keep 5 --dry-run"],
    )
    with_store(sp)
    sp.add_argument("--keep", type=int, required=True, metavar="N", help="keep the newest N versions (version_order)")
    sp.add_argument(
        "--grace-hours",
        type=float,
        default=24,
        help="leave payloads and uploads younger than this alone: a running put may still need them (default 24)",
    )
    sp.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    sp.set_defaults(func=cmd_prune)


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    for add in (register_pack, register_verify, register_unpack, register_show, register_list, register_prune):
        add(sub)
