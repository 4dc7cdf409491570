"""What every command of the CLI shares: the source from ``--config`` and the environment, stores.

The same ``source`` keys as the resource type (docs/reference.md), from a YAML file with
``OFFLINE_BUNDLE_<KEY>`` variables over it; an empty variable is an unset one, as an empty source
value is an absent one (an unset ``((var))`` in a task's params arrives as ``""``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from offline_bundle.core.config import SOURCE_KEYS, Source, parse_source
from offline_bundle.core.log import Redactor
from offline_bundle.core.yamlfile import load_yaml
from offline_bundle.errors import ConfigError, PathError
from offline_bundle.storage.base import Store
from offline_bundle.storage.s3.store import S3Store
from offline_bundle.transfer.pieces import MediumStore

ENV_PREFIX = "OFFLINE_BUNDLE_"
BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
BOOL_KEYS = frozenset({"use_path_style", "disable_ssl", "skip_ssl_verification", "allow_unencrypted", "allow_unsigned"})
LOCAL_BUCKET = "local-folder"


def bool_word(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word not in BOOL_WORDS:
        raise ConfigError(f"{name} must be true or false")
    return BOOL_WORDS[word]


def read_yaml(path: str, option: str) -> Any:
    """A YAML (or JSON) file given with ``option``; errors name the option and the file."""
    return load_yaml(path, option)


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
    valid = f"{ENV_PREFIX}<KEY> for the keys {', '.join(SOURCE_KEYS)}"
    raw.update(
        env_values(env, ENV_PREFIX, SOURCE_KEYS, BOOL_KEYS, valid=valid, also=("DEBUG", "S3_RETRIES", "PARALLEL_PARTS"))
    )
    return raw


def env_values(
    env: dict[str, str],
    prefix: str,
    keys: tuple[str, ...],
    bool_keys: frozenset[str],
    *,
    valid: str,
    also: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The ``<prefix><KEY>`` variables of ``keys``; any other variable under ``prefix`` (but ``also``) is
    refused, since a misspelt name would otherwise be silently ignored. ``valid`` says what may be set."""
    known = {prefix + k.upper() for k in (*keys, *also)}
    unknown = sorted(k for k in env if k.startswith(prefix) and k not in known)
    if unknown:
        raise ConfigError(f"unknown variable {', '.join(unknown)}; valid: {valid}")
    raw: dict[str, Any] = {}
    for key in keys:
        name = prefix + key.upper()
        value = env.get(name)
        if value is None or value == "":
            continue  # an empty variable is an unset one, as an empty source value is an absent one
        raw[key] = bool_word(name, value) if key in bool_keys else value
    return raw


def source_from(args: argparse.Namespace, *, local: str | None = None) -> Source:
    raw = load_config(args.config, dict(os.environ))
    if local is not None:
        raw.setdefault("bucket", LOCAL_BUCKET)
    return parse_source(raw, where="config")


def source_and_store(args: argparse.Namespace, redact: Redactor) -> tuple[Source, Store]:
    """The bundle's source (its secrets redacted from every later message) and its store, or
    the ``--from-dir`` folder instead."""
    source = source_from(args, local=args.from_dir)
    redact.add(source.secret_values())
    return source, store_for(source, args.from_dir)


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
    return MediumStore(local) if local else S3Store.from_source(source)
