"""``publish`` on the command line: the target store, the bundle (a folder or its store), a summary.

The target is configured apart from the bundle (``--target`` and ``OFFLINE_BUNDLE_TARGET_<KEY>``,
S3 keys only) because on the air-gapped side they are different buckets with different rights:
mixing their variables up would publish into the bundle store.
"""

from __future__ import annotations

import argparse
import os

from offline_bundle.bundle.commit import latest_version
from offline_bundle.cli.common import ENV_PREFIX, LOCAL_BUCKET, env_values, load_config, store_for
from offline_bundle.cli.helptext import Subcommands, add_command, add_verbose, with_from_dir, with_part, with_version
from offline_bundle.core.config import S3_KEYS, Source, parse_source
from offline_bundle.core.log import Log, Redactor
from offline_bundle.core.names import check_part_name
from offline_bundle.errors import ConfigError
from offline_bundle.publish.objects import DEFAULT_JOBS, MAX_JOBS, PublishError, publish_exploded, publish_from_bundle

TARGET_ENV_PREFIX = ENV_PREFIX + "TARGET_"
SOURCE_ENV_PREFIX = ENV_PREFIX
TARGET_BOOL_KEYS = frozenset({"use_path_style", "disable_ssl", "skip_ssl_verification"})


def load_target(path: str | None, env: dict[str, str]) -> Source:
    """The target: S3 keys from ``--target`` (YAML), ``OFFLINE_BUNDLE_TARGET_<KEY>`` variables over it."""
    raw = load_config(path, {}) if path else {}
    valid = f"{TARGET_ENV_PREFIX}<KEY> for {', '.join(S3_KEYS)}"
    raw.update(env_values(env, TARGET_ENV_PREFIX, S3_KEYS, TARGET_BOOL_KEYS, valid=valid))
    if "bucket" not in raw:
        raise ConfigError(f"the publish target needs a bucket: give --target TARGET.yml or {TARGET_ENV_PREFIX}BUCKET")
    return parse_source(raw, where="target", s3_only=True)


def load_bundle_source(args: argparse.Namespace, env: dict[str, str]) -> Source:
    """The bundle's store, as every other command reads it (``--from-config`` + ``OFFLINE_BUNDLE_<KEY>``)."""
    bundle_env = {k: v for k, v in env.items() if not k.startswith(TARGET_ENV_PREFIX)}
    raw = load_config(args.from_config, bundle_env)
    if args.from_dir:
        raw.setdefault("bucket", LOCAL_BUCKET)
    return parse_source(raw, where="config")


def cmd_publish(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    env = dict(os.environ)
    target = load_target(args.config, env)
    redact.add(target.secret_values())
    only = tuple(check_part_name(p) for p in args.part or ())
    skip = tuple(check_part_name(p) for p in args.skip_part or ())
    if not 1 <= args.jobs <= MAX_JOBS:
        raise ConfigError(f"--jobs must be between 1 and {MAX_JOBS}")
    from_bundle = args.from_config or args.from_dir or args.version
    if args.exploded_dir and from_bundle:
        raise ConfigError("give either EXPLODED_DIR or a bundle (--from-config/--from-dir/--version), not both")
    if args.exploded_dir:
        ignored = sorted(
            k
            for k in env
            if k.startswith(SOURCE_ENV_PREFIX) and not k.startswith(TARGET_ENV_PREFIX) and k != "OFFLINE_BUNDLE_DEBUG"
        )
        if ignored:
            log(
                f"note: {', '.join(ignored)} describe a bundle's store and are not used when publishing a folder; "
                f"the target takes {TARGET_ENV_PREFIX}<KEY>"
            )
        result = publish_exploded(
            args.exploded_dir, target, overwrite=args.overwrite, jobs=args.jobs, only=only, skip=skip, log=log
        )
    else:
        has_env = any(k.startswith(SOURCE_ENV_PREFIX) and not k.startswith(TARGET_ENV_PREFIX) for k in env)
        if not (args.from_config or args.from_dir or has_env):
            raise ConfigError(
                "nothing to publish: give EXPLODED_DIR, or a bundle with --from-config SOURCE.yml "
                "(or OFFLINE_BUNDLE_<KEY> variables) or --from-dir DIR, and --version"
            )
        source = load_bundle_source(args, env)
        redact.add(source.secret_values())
        store = store_for(source, args.from_dir)
        version = args.version or latest_version(source, store, log)
        result = publish_from_bundle(
            source, store, version, target, overwrite=args.overwrite, only=only, skip=skip, log=log
        )
    for line in result.summary():
        print(line)
    if result.failures:
        raise PublishError(
            f"{len(result.failures)} file(s) not published, e.g. {result.failures[0]} (every one is logged above)"
        )
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``publish`` to the ``offline-bundle`` command line."""
    sp = add_command(
        sub,
        "publish",
        "upload each part's files under its destination in a target bucket (from a folder or a bundle)",
        [
            "# a folder a get or `unpack` wrote",
            "offline-bundle publish --target products.yml ./exploded",
            "# straight from the bundle's store: verified as `in` verifies it, nothing on disk",
            "offline-bundle publish --from-config airgapped.yml --version 1.0.0 --target products.yml",
        ],
        details=(
            "Each file goes to <target prefix><part destination><path> in the TARGET store (where install\n"
            "pipelines read products), given by --target TARGET.yml and OFFLINE_BUNDLE_TARGET_<KEY>\n"
            "variables (S3 keys only). The bundle is EXPLODED_DIR, or the store of --from-config /\n"
            "OFFLINE_BUNDLE_<KEY> / --from-dir. Same key and bytes: skipped; other bytes: an error\n"
            "unless --overwrite."
        ),
    )
    sp.add_argument(
        "--target",
        "--config",
        dest="config",
        metavar="TARGET.yml",
        help="the TARGET store's config, not the bundle's: YAML of S3 keys (bucket, prefix, endpoint, ...); "
        "--config is the same option",
    )
    sp.add_argument("--overwrite", action="store_true", help="replace objects that hold other bytes")
    sp.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help=f"files uploaded at once (default {DEFAULT_JOBS})")
    with_part(sp, "publish")
    sp.add_argument("--skip-part", action="append", metavar="NAME", help="do not publish this part (repeat for more)")
    sp.add_argument(
        "--from-config", metavar="SOURCE.yml", help="the bundle's source keys (OFFLINE_BUNDLE_<KEY> override)"
    )
    with_from_dir(sp)
    with_version(sp)
    sp.add_argument("exploded_dir", nargs="?", metavar="EXPLODED_DIR")
    add_verbose(sp)
    sp.set_defaults(func=cmd_publish)
