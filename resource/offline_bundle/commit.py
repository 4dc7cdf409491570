"""Commit objects (SPEC §7): where they live, how they are listed, how they are trusted.

A version exists exactly when its commit object does; it is written last, so a reader never
sees a half-uploaded bundle as a version.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace

from . import crypto
from .config import Source
from .errors import NotCommittedError, StoreError, VerificationError
from .manifest import Manifest, parse_manifest
from .names import is_valid_name
from .store import Store
from .versions import Committed, nearest

COMMIT_NAME = "manifest.json.asc"
# S3 user metadata on a commit object: the writer's clock in nanoseconds. S3 listings give time
# stamps to the second, and ``version_order: arrival`` must still order versions committed within
# one second (import and mirror commit several in a row).
ARRIVED_NS_META = "offline-bundle-arrived-ns"


def commit_key(source: Source, version: str) -> str:
    return source.key(version, COMMIT_NAME)


def blobs_prefix(source: Source) -> str:
    return source.key("_blobs", "")


def write_commit(store: Store, key: str, body: bytes, *, only_if_absent: bool) -> None:
    """Write a commit object with the arrival stamp that breaks same-second ties."""
    store.put_bytes(key, body, only_if_absent=only_if_absent, metadata={ARRIVED_NS_META: str(time.time_ns())})


def list_committed(source: Source, store: Store) -> list[Committed]:
    """Committed versions from one listing; objects that break the naming rule are ignored.

    Only versions sharing a time stamp cost a HEAD each (to read their arrival stamp).
    """
    base = source.key("")
    out = []
    for obj in store.list(base):
        rest = obj.key[len(base) :]
        version, _, leaf = rest.partition("/")
        if leaf == COMMIT_NAME and is_valid_name(version):
            out.append(Committed(version, obj.last_modified))
    shared = {t for t, n in Counter(c.arrived for c in out).items() if n > 1}
    return [_with_arrival_stamp(source, store, c) if c.arrived in shared else c for c in out]


def _with_arrival_stamp(source: Source, store: Store, c: Committed) -> Committed:
    try:
        info = store.head(commit_key(source, c.version))
    except StoreError:
        return c  # ordering falls back to the version string; check still answers
    raw = info.metadata.get(ARRIVED_NS_META, "") if info is not None else ""
    return replace(c, arrived_ns=int(raw)) if raw.isdigit() else c


def trusted_keys(source: Source) -> list[str]:
    """Trusted keys, plus the public half of our own signing key (the put's implicit get)."""
    keys = list(source.trusted_public_keys)
    if source.signing_private_key:
        keys.append(crypto.public_key_of(source.signing_private_key, source.signing_private_key_passphrase))
    return keys


@dataclass(frozen=True)
class Trusted:
    manifest: Manifest
    manifest_bytes: bytes
    commit_bytes: bytes
    signer: str | None
    signer_expired: bool


def read_commit(source: Source, store: Store, version: str, *, keys: list[str] | None = None) -> Trusted:
    """Fetch and verify a commit object; the manifest must name this bundle and this version.

    Verification comes before anything of the manifest is believed, and before any payload is
    fetched. Naming itself defeats replay: an older commit object copied under a newer version's
    key names the older version and is refused.
    """
    key = commit_key(source, version)
    data = store.get_bytes(key)
    if data is None:
        raise NotCommittedError(_not_committed(source, store, version))
    return trust_commit(source, data, version, keys=keys)


def _not_committed(source: Source, store: Store, version: str) -> str:
    """Name the nearest committed versions: a typo or a version not yet carried over is then plain."""
    where = f"{store.description} under {source.key('')}"
    try:
        committed = [c.version for c in list_committed(source, store)]
    except StoreError:
        committed = []
    missing = f"version {version} of bundle {source.name} is not committed in {where}"
    if not committed:
        return f"{missing}; no version is (check name and prefix)"
    return f"{missing}; nearest: {', '.join(nearest(committed, version))}"


def trust_commit(source: Source, data: bytes, version: str, *, keys: list[str] | None = None) -> Trusted:
    signer: str | None = None
    expired = False
    if data.lstrip().startswith(crypto.SIGNED_HEADER):
        verified = crypto.verify_clearsigned(data, keys if keys is not None else trusted_keys(source))
        manifest_bytes, signer, expired = verified.data, verified.fingerprint, verified.key_expired
    elif data.lstrip().startswith(b"-----BEGIN PGP"):
        raise VerificationError("the commit object is an OpenPGP message of an unknown kind; refused")
    else:
        if not source.allow_unsigned:
            raise VerificationError(
                f"version {version} of bundle {source.name} is unsigned; refused (allow_unsigned: true accepts it)"
            )
        manifest_bytes = data.rstrip(b"\r\n")
    manifest = parse_manifest(manifest_bytes, blobs_prefix=blobs_prefix(source))
    if manifest.name != source.name or manifest.version != version:
        raise VerificationError(
            f"the commit object at version {version} of bundle {source.name} describes "
            f"{manifest.name} {manifest.version}: a replayed or misplaced commit object; refused"
        )
    return Trusted(manifest, manifest_bytes, data, signer, expired)
