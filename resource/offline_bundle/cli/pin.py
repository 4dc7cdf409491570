"""The command line of ``pin``, ``fetch`` and ``publish-images`` (making any pipeline offline)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline_bundle.cli.helptext import Subcommands, add_command
from offline_bundle.core.log import Log, Redactor
from offline_bundle.errors import ConfigError
from offline_bundle.lint.pipeline import load_params
from offline_bundle.offline.fetch import FetchOptions, fetch_lock, parse_part_spec
from offline_bundle.offline.lock import load_lock
from offline_bundle.offline.oci.publish import publish_images
from offline_bundle.offline.oci.registry import RegistryClient
from offline_bundle.offline.pin import PinOptions, pin_files
from offline_bundle.offline.resolvers import LiveResolvers
from offline_bundle.offline.vars import Vars


def cmd_pin(args: argparse.Namespace, log: Log, redact: Redactor) -> int:

    options = PinOptions(
        prefix=args.prefix,
        registry=args.registry,
        keep=frozenset(args.keep or ()),
        allow_unpinned=args.allow_unpinned,
        s3_var_prefix=args.s3_var_prefix,
        target_prefix=args.target_prefix,
    )
    resolvers = LiveResolvers(
        insecure_registries=tuple(args.insecure_registry or ()), ca_bundle=args.ca_bundle, log=log
    )
    result = pin_files(
        args.pipelines, args.out, vars_files=args.vars or [], options=options, resolvers=resolvers, log=log
    )
    lock = result.lock
    kinds: dict[str, int] = {}
    for e in lock.entries.values():
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    counted = ", ".join(f"{n} {k}(s)" for k, n in sorted(kinds.items())) or "nothing"
    print(f"pinned {len(lock.pipelines)} pipeline(s): {counted} locked in {Path(args.out) / 'offline.lock.yml'}")
    for k in lock.kept:
        print(f"kept: {k['pipeline']}: resources.{k['resource']} ({k['type']}): {k['why']}")
    for r in lock.refused:
        print(f"NOT CARRIED: {r['pipeline']}: {r['what']}: {r['why']}")
    return 0


def cmd_fetch(args: argparse.Namespace, log: Log, redact: Redactor) -> int:

    values = load_params(args.vars) if args.vars else {}
    # The values the lock's credentials name are secrets: never printed, whatever prints them.
    refs = [r for e in load_lock(args.lock).entries.values() for r in (e.fields.get("credentials") or {}).values()]
    redact.add([str(v) for v in (Vars(values).resolve(r) for r in refs) if v not in refs and str(v)])
    options = FetchOptions(
        insecure_registries=tuple(args.insecure_registry or ()),
        parts_base=args.parts_base,
        ca_bundle=args.ca_bundle,
        extra_parts=tuple(parse_part_spec(s) for s in args.also_part or ()),
    )
    result = fetch_lock(args.lock, args.out, vars_values=values, options=options, log=log)
    print(
        f"fetched {len(result.fetched)} artifact(s), {len(result.skipped)} already there; "
        f"{len(result.parts)} part(s) listed in {Path(args.out) / 'parts.json'}"
    )
    return 0


def cmd_publish_images(args: argparse.Namespace, log: Log, redact: Redactor) -> int:

    folder = Path(args.exploded_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    client = RegistryClient(insecure_registries=tuple(args.insecure_registry or ()), log=log)
    pushed = publish_images(folder, args.registry, client=client, log=log)
    for target, digest in pushed:
        print(f"pushed {target}@{digest}")
    print(f"published {len(pushed)} image(s) to {args.registry}")
    return 0


def register_pin(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "pin",
        "lock every external artifact of pipelines and rewrite them to read from the air-gapped store",
        ["offline-bundle pin install.yml --vars params.yml --keep terraform-state --out pinned"],
        details="Writes DIR/offline.lock.yml and the rewritten pipelines; `fetch` downloads what it locked.",
    )
    sp.add_argument("pipelines", nargs="+", metavar="PIPELINE.yml")
    sp.add_argument(
        "--vars", "-l", action="append", metavar="PARAMS.yml", help="((vars)) values (as fly -l; repeatable)"
    )
    sp.add_argument("--out", required=True, metavar="DIR", help="folder for offline.lock.yml and the pipelines")
    sp.add_argument("--prefix", default="offline/", help="key prefix of carried artifacts (default: offline/)")
    sp.add_argument(
        "--target-prefix",
        default="",
        metavar="PREFIX",
        help="the prefix of the publish target on the air-gapped side (its objects are read there)",
    )
    sp.add_argument("--registry", metavar="HOST/PREFIX", help="images from this internal registry, not from S3")
    sp.add_argument(
        "--insecure-registry", action="append", metavar="HOST", help="plain HTTP to this registry (repeatable)"
    )
    sp.add_argument(
        "--keep", action="append", metavar="RESOURCE", help="a resource already on the air-gapped side (repeatable)"
    )
    sp.add_argument("--allow-unpinned", action="store_true", help="report what cannot be carried, do not fail")
    sp.add_argument("--ca-bundle", metavar="PEM", help="CA certificates added for HTTPS (GitHub API)")
    sp.add_argument(
        "--s3-var-prefix", default="offline_s3_", help="vars of the air-gapped S3 store (default: offline_s3_)"
    )
    sp.set_defaults(func=cmd_pin)


def register_fetch(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "fetch",
        "download and verify every artifact of an offline.lock.yml as bundle parts",
        [
            "offline-bundle fetch pinned/offline.lock.yml --out fetched --vars credentials.yml \\",
            "    --also-part pinned-pipelines=pinned=offline/pipelines/",
        ],
        details="Writes one folder per part and DIR/parts.json, the parts list for a put or `pack --parts-file`.",
    )
    sp.add_argument("lock", metavar="offline.lock.yml")
    sp.add_argument("--out", required=True, metavar="DIR")
    sp.add_argument(
        "--vars", "-l", action="append", metavar="PARAMS.yml", help="values of the lock's credentials (repeatable)"
    )
    sp.add_argument(
        "--insecure-registry", action="append", metavar="HOST", help="plain HTTP to this registry (repeatable)"
    )
    sp.add_argument("--ca-bundle", metavar="PEM", help="CA certificates added for HTTPS downloads")
    sp.add_argument(
        "--parts-base",
        metavar="PATH",
        help="path before each part in parts.json (default: DIR's own name, as a Concourse output)",
    )
    sp.add_argument(
        "--also-part",
        action="append",
        metavar="NAME=PATH[=DEST]",
        help="one more entry for parts.json (e.g. pin's folder: pinned=pinned=offline/pipelines/); repeatable",
    )
    sp.set_defaults(func=cmd_fetch)


def register_publish_images(sub: Subcommands[argparse.ArgumentParser]) -> None:
    sp = add_command(
        sub,
        "publish-images",
        "push the carried OCI images into an air-gapped registry by digest",
        ["offline-bundle publish-images --registry registry.airgap.example/mirror ./exploded"],
    )
    sp.add_argument("exploded_dir", metavar="EXPLODED_DIR")
    sp.add_argument("--registry", required=True, metavar="HOST/PREFIX")
    sp.add_argument(
        "--insecure-registry", action="append", metavar="HOST", help="plain HTTP to this registry (repeatable)"
    )
    sp.set_defaults(func=cmd_publish_images)


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    for add in (register_pin, register_fetch, register_publish_images):
        add(sub)
