"""``prune --keep N``: drop old versions and what nothing references any more (docs/reference.md).

Order matters for readers: a version's commit object goes first (the version disappears whole),
then payloads that no kept version references. A payload or an upload younger than the grace
period is left alone, because a put that is still running may have uploaded it without having
committed yet; deleting it would make that put commit a version whose payload is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from offline_bundle.bundle.approvals import approvals_prefix
from offline_bundle.bundle.commit import blobs_prefix, commit_key, payload_object_key, trusted_keys, verified_listing
from offline_bundle.core.config import Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import Manifest
from offline_bundle.errors import BundleError, ConfigError
from offline_bundle.storage.base import Store

DEFAULT_GRACE = timedelta(days=1)


@dataclass(frozen=True)
class PruneResult:
    kept: tuple[str, ...]
    deleted_versions: tuple[str, ...]
    deleted_payloads: tuple[str, ...]
    aborted_uploads: int
    kept_young: int


def prune(
    source: Source,
    store: Store,
    keep: int,
    log: Log,
    *,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    if keep < 1:
        raise ConfigError("--keep must be at least 1: pruning every version is deleting the bundle")
    now = now or datetime.now(UTC)
    ordered = _committed(source, store, log)
    kept, dropped = ordered[-keep:], ordered[:-keep]
    referenced: set[str] = set()
    for m in kept:
        referenced.update(payload_object_key(source, p.payload) for p in m.parts)
    _drop_versions(source, store, dropped, log, dry_run)
    deleted, young = _drop_payloads(source, store, referenced, log, now - grace, dry_run)
    aborted = _abort_uploads(source, store, log, now - grace, dry_run)
    return PruneResult(
        kept=tuple(c.version for c in kept),
        deleted_versions=tuple(c.version for c in dropped),
        deleted_payloads=tuple(deleted),
        aborted_uploads=aborted,
        kept_young=young,
    )


def _committed(source: Source, store: Store, log: Log) -> list[Manifest]:
    """Every committed version, oldest first; one that does not verify stops the prune."""
    listing = verified_listing(source, store, log, keys=trusted_keys(source), untrusted_is_error=True)
    if listing.skipped:
        raise BundleError(
            f"{len(listing.skipped)} commit object(s) of bundle {source.name} do not verify (e.g. version "
            f"{next(iter(listing.skipped))}): prune cannot tell what they reference; nothing was deleted "
            "(delete them, or trust their signer)"
        )
    return [t.manifest for t in listing.versions]


def _drop_versions(source: Source, store: Store, dropped: list[Manifest], log: Log, dry_run: bool) -> None:
    act = "would delete" if dry_run else "deleted"
    for c in dropped:
        if not dry_run:
            store.delete(commit_key(source, c.version))
            for obj in list(store.list(approvals_prefix(source, c.version))):  # after the version, as it goes
                store.delete(obj.key)
        log(f"{act} version {c.version}")


def _drop_payloads(
    source: Source,
    store: Store,
    referenced: set[str],
    log: Log,
    cutoff: datetime,
    dry_run: bool,
) -> tuple[list[str], int]:
    """(payload objects deleted, unreferenced ones kept because they are newer than ``cutoff``)."""
    deleted: list[str] = []
    young = 0
    for obj in store.list(blobs_prefix(source)):
        if obj.key in referenced:
            continue
        if obj.last_modified > cutoff:
            young += 1
            continue
        if not dry_run:
            store.delete(obj.key)
        deleted.append(obj.key)
    act = "would delete" if dry_run else "deleted"
    log(f"{act} {len(deleted)} unreferenced payload object(s); kept {young} younger than the grace period")
    return deleted, young


def _abort_uploads(source: Source, store: Store, log: Log, cutoff: datetime, dry_run: bool) -> int:
    aborted = 0
    for up in store.list_uploads(blobs_prefix(source)):
        if up.initiated <= cutoff:
            if not dry_run:
                store.abort_upload(up.key, up.upload_id)
            aborted += 1
    verb = "would abort" if dry_run else "aborted"
    log(f"{verb} {aborted} incomplete multipart upload(s) older than the grace period")
    return aborted
