"""The carrying commands of ``offline-bundle``: ``export``, ``import``, ``mirror`` and ``records``.

Kept apart from ``cli.py`` so the transfer features register themselves with one call; the
commands are thin: parse, build the stores, run ``media``/``mirror``/``records``, print a summary
on stdout (logs, progress and the records' lines go to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os

from offline_bundle.bundle.commit import COMMIT_NAME
from offline_bundle.bundle.records import describe, list_records
from offline_bundle.cli.common import existing_folder, load_config, source_and_store, source_from
from offline_bundle.cli.helptext import Subcommands, add_command, add_verbose, with_config, with_store, with_version
from offline_bundle.core.config import Source, parse_source
from offline_bundle.core.log import Log, Redactor
from offline_bundle.core.names import check_name
from offline_bundle.errors import ConfigError
from offline_bundle.storage.s3.store import S3Store
from offline_bundle.transfer.media import Exporter, Importer
from offline_bundle.transfer.mirror import Mirror
from offline_bundle.transfer.pieces import DEFAULT_PIECE, parse_size

# Variables that are not source keys and so may stay set while mirror reads only its two files.
_NOT_SOURCE_VARIABLES = ("OFFLINE_BUNDLE_DEBUG", "OFFLINE_BUNDLE_S3_RETRIES", "OFFLINE_BUNDLE_PARALLEL_PARTS")
# FAT32's largest file. Media for an air gap are often FAT32 sticks; the size is allowed (exFAT,
# ext4, NTFS hold it) but the operator should hear before a long export that the stick cannot.
FAT32_MAX_FILE = 4 * 1024**3 - 1


def _version(value: str | None, what: str) -> str | None:
    return check_name(value, what) if value is not None else None


def cmd_export(args: argparse.Namespace, log: Log, redact: Redactor) -> int:

    source = source_from(args)
    redact.add(source.secret_values())
    piece_size = parse_size(args.piece_size) if args.piece_size else DEFAULT_PIECE
    if piece_size > FAT32_MAX_FILE:
        log(
            f"warning: --piece-size {args.piece_size} is over 4 GiB - 1 byte: a FAT32 medium cannot hold such a "
            "piece (use exFAT, ext4 or NTFS, or --piece-size 4000MiB)"
        )
    exporter = Exporter(source, S3Store.from_source(source), args.to, log, piece_size=piece_size)
    r = exporter.export(_version(args.version, "--version"), _version(args.since, "--since"))
    print(f"{source.name} {r.version} -> {exporter.root}: signer {r.signer or 'UNSIGNED'}")
    print(
        f"payloads: {len(r.exported)} on the medium ({r.pieces_written} piece(s) written, {r.pieces_kept} kept)"
        + (f", {len(r.skipped)} left out (--since {args.since})" if r.skipped else "")
    )
    if r.approvals:
        print(f"approvals: {len(r.approvals)} carried to the medium")
    return 0


MEDIUM_SEARCH_DEPTH = 8  # folders below the medium's root where a prefix may put the bundle


def _prefixes_on_medium(root: str, name: str) -> set[str]:
    """Every prefix under which the medium holds a committed version of bundle ``name``.

    Links on the medium are never followed; payload and record folders are not searched.
    """

    found: set[str] = set()
    for dirpath, dirnames, _files in os.walk(root):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel + "/"
        if rel.count("/") >= MEDIUM_SEARCH_DEPTH:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if d not in ("_blobs", "_records") and not d.endswith(".pieces")]
        for d in dirnames:
            folder = os.path.join(dirpath, d)
            if not d.endswith(name) or os.path.islink(folder):
                continue
            with contextlib.suppress(OSError):
                if any(os.path.isfile(os.path.join(folder, v, COMMIT_NAME)) for v in os.listdir(folder)):
                    found.add(rel + d[: -len(name)])
    return found


def _medium_prefix(args: argparse.Namespace, source: Source, log: Log) -> str | None:
    """The prefix the bundle has on the medium: export writes the exporting side's, not necessarily this one's.

    Without ``--medium-prefix``, the medium's own answer is taken when it holds the bundle under one
    prefix only; the bundle's trust comes from its signature, not from where it sits on the medium.
    """
    if args.medium_prefix is not None:
        return str(args.medium_prefix)
    if not os.path.isdir(args.from_):
        return None
    found = _prefixes_on_medium(args.from_, source.name)
    if not found or source.prefix in found:
        return None
    if len(found) > 1:
        listed = ", ".join(repr(p) for p in sorted(found))
        raise ConfigError(
            f"{args.from_} holds bundle {source.name} under several prefixes ({listed}); "
            "choose one with --medium-prefix"
        )
    prefix = found.pop()
    log(f"the medium holds bundle {source.name} under prefix {prefix!r}; importing it under {source.prefix!r}")
    return prefix


def cmd_import(args: argparse.Namespace, log: Log, redact: Redactor) -> int:

    source = source_from(args)
    redact.add(source.secret_values())
    medium = existing_folder(args.from_, "--from")
    medium_prefix = _medium_prefix(args, source, log)
    importer = Importer(source, S3Store.from_source(source), medium, log, medium_prefix=medium_prefix)
    for r in importer.import_all(_version(args.version, "--version")):
        if r.already_committed:
            carried = f"{len(r.approvals)} approval(s) carried" if r.approvals else "nothing imported"
            print(f"{source.name} {r.version}: already committed, {carried}")
        else:
            print(
                f"{source.name} {r.version}: signer {r.signer or 'UNSIGNED'}; {len(r.uploaded)} payload(s) uploaded "
                f"({r.pieces_uploaded} piece(s) sent, {r.pieces_resumed} resumed), {len(r.present)} already there"
            )
    return 0


def _mirror_source(path: str, what: str) -> Source:
    """One of mirror's two configs: only its file counts (a variable could not say which side it meant)."""

    stray = sorted(k for k in os.environ if k.startswith("OFFLINE_BUNDLE_") and k not in _NOT_SOURCE_VARIABLES)
    if stray:
        raise ConfigError(f"mirror reads its two config files only; unset {', '.join(stray)}")
    return parse_source(load_config(path, {}), where=what)


def cmd_mirror(args: argparse.Namespace, log: Log, redact: Redactor) -> int:

    src = _mirror_source(args.from_config, "from-config")
    dst = _mirror_source(args.to_config, "to-config")
    redact.add(src.secret_values() + dst.secret_values())
    mirror = Mirror(src, S3Store.from_source(src), dst, S3Store.from_source(dst), log)
    r = mirror.run(keep=args.keep, version=_version(args.version, "--version"))
    print(
        f"{src.name}: {len(r.copied)} version(s) copied ({', '.join(r.copied) or 'none'}), "
        f"{len(r.present)} already there; {r.payloads_copied} payload(s) copied, {r.payloads_present} already there"
    )
    if r.failed:
        for version, reason in r.failed:
            print(f"FAILED {version}: {reason}")
        log(f"error: mirror: {len(r.failed)} of {len(r.failed) + len(r.copied) + len(r.present)} version(s) failed")
        return 1
    return 0


def cmd_records(args: argparse.Namespace, log: Log, redact: Redactor) -> int:

    source, store = source_and_store(args, redact)
    found = list_records(source, store, version=_version(args.version, "--version"))
    for rec in found:
        if rec.doc is None:
            log(f"warning: {rec.key} is not a readable record")
        elif args.json:
            print(json.dumps(rec.doc, separators=(",", ":"), sort_keys=True))
        else:
            print(describe(rec.doc))
    if not found:
        log(f"no records of bundle {source.name} in {store.description}")
    return 0


def register_export(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "export",
        "copy a committed version to removable media, in pieces with a hash each",
        [
            "offline-bundle export --config connected.yml --to /media/usb",
            "# only what the far side lacks: it has 1.0.0",
            "offline-bundle export --config connected.yml --to /media/usb --version 1.1.0 --since 1.0.0",
        ],
        details="The signature is verified first; resumable; one bundle name (the config's) per run.",
    )
    with_config(sp)
    add_verbose(sp)
    sp.add_argument("--to", required=True, metavar="DIR", help="the medium (a folder; created if missing)")
    with_version(sp, "the version to export (default: the latest)")
    sp.add_argument(
        "--piece-size",
        metavar="SIZE",
        help="largest piece, 5MiB to 5GiB (default 4000MiB: FAT32 holds no file of 4 GiB or more; warns above)",
    )
    sp.add_argument("--since", metavar="V0", help="leave out the payloads V0 references (the far side has V0)")
    sp.set_defaults(func=cmd_export)


def register_import(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "import",
        "upload the versions on a medium into the bucket, verified, commit last",
        ["offline-bundle import --config airgapped.yml --from /media/usb"],
        details=(
            "The signature is verified before anything is uploaded, each payload only completed once\n"
            "every piece and its SHA-256 match; resumable; one bundle name (the config's) per run."
        ),
    )
    with_config(sp)
    add_verbose(sp)
    sp.add_argument("--from", dest="from_", required=True, metavar="DIR", help="the medium written by export")
    with_version(sp, "import only this version (default: all)")
    sp.add_argument(
        "--medium-prefix",
        metavar="PREFIX",
        help="the prefix the bundle has on the medium, when export ran with another prefix than this config's "
        "(default: found on the medium)",
    )
    sp.set_defaults(func=cmd_import)


def register_mirror(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "mirror",
        "copy committed versions from one store to another, verified, commit last",
        ["offline-bundle mirror --from-config connected.yml --to-config airgapped.yml --keep 3"],
        details=(
            "For a cross-domain link. Each version is verified with the keys of --to-config before it\n"
            "is written there; versions already there are skipped. Reads its two files only."
        ),
    )
    add_verbose(sp)
    sp.add_argument("--from-config", required=True, metavar="A.yml", help="source keys of the store to copy from")
    sp.add_argument("--to-config", required=True, metavar="B.yml", help="source keys of the store to copy to")
    sp.add_argument("--keep", type=int, metavar="N", help="only the newest N versions (version_order of A)")
    with_version(sp, "only this version")
    sp.set_defaults(func=cmd_mirror)


def register_records(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "records",
        "the transfer records of a bundle (export, import, mirror, get, publish)",
        [
            "offline-bundle records --config airgapped.yml --version 1.0.0",
            "offline-bundle records --config airgapped.yml --from-dir /media/usb --json",
        ],
    )
    with_store(sp, "a local folder in the bucket layout (a medium)")
    with_version(sp, "only records of this version")
    sp.add_argument("--json", action="store_true", help="each record as its JSON object, one per line")
    sp.set_defaults(func=cmd_records)


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    for add in (register_export, register_import, register_mirror, register_records):
        add(sub)
