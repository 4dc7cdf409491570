"""Transfer records (``_records/``, docs/format.md): one small JSON object per event, for auditors.

Auditors ask for evidence that verification ran (what moved, which version and digests, whose
signature was checked, when, by which build or host). S3 cannot append, so each event is its own
object, ``<prefix><name>/_records/<UTC time>-<event>-<id>.json``; the time first makes a listing
chronological, the random id keeps two events of the same second apart.

A record is written where the identity may write: an air-gapped get usually runs with read-only
credentials, and a refused write must not fail a transfer that succeeded, so it becomes a warning.
Every record is announced on stderr with one line a person reads (event, bundle, who, size, signer,
where it was stored); the JSON itself follows with ``--verbose``, and in the Concourse scripts
(which take no flags) when the record was stored nowhere, so the build log is then its one copy.
Records hold names, versions, digests, fingerprints and build coordinates only: never a ``source``
value.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from offline_bundle import __version__
from offline_bundle.core.config import BuildInfo, Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import Manifest
from offline_bundle.core.progress import human
from offline_bundle.errors import AccessDeniedError, BundleError, StoreError
from offline_bundle.storage.base import Store
from offline_bundle.storage.folder import DirStore
from offline_bundle.storage.s3.store import S3Store

RECORDS_DIR = "_records"
RECORD_FORMAT = 1
RECORD_MAX_BYTES = 1 << 20


# Whether each record's JSON is printed after its summary line. A process-wide setting because the
# records are written deep inside export, import, mirror, unpack and publish; the command line sets
# it once from ``--verbose`` before any of them runs. None (the Concourse scripts, which take no
# flags): only when the record was stored nowhere, so the build log keeps its one copy.
_print_json: bool | None = None


def print_record_json(on: bool | None) -> None:
    """True (``--verbose``): print each record's JSON on stderr after its summary line; False: never;
    None: only when it was stored nowhere."""
    global _print_json
    _print_json = on


def records_prefix(source: Source) -> str:
    return source.key(RECORDS_DIR, "")


@dataclass(frozen=True)
class Record:
    event: str
    bundle: str
    version: str
    at: datetime
    signer: str | None
    parts: tuple[dict[str, Any], ...]
    by: dict[str, str]
    details: dict[str, Any] = field(default_factory=dict)
    record_id: str = field(default_factory=lambda: secrets.token_hex(4))
    # What became of the signature in this event; None: "verified" with a signer, else "unsigned".
    # A publish of an exploded folder says its get verified it and it was not checked again.
    signature: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "record_format": RECORD_FORMAT,
            "event": self.event,
            "bundle": self.bundle,
            "version": self.version,
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "signer": self.signer,
            "signature": self.signature or ("verified" if self.signer else "unsigned"),
            "parts": list(self.parts),
            "by": self.by,
            "tool": {"name": "offline-bundle", "version": __version__},
            "details": self.details,
        }

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode("utf-8")

    def key(self, source: Source) -> str:
        return f"{records_prefix(source)}{self.at.strftime('%Y%m%dT%H%M%SZ')}-{self.event}-{self.record_id}.json"


def who(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Concourse build (``BUILD_*``) when there is one; the host (and user) in any case."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    build = BuildInfo.from_env(dict(env))
    if build.values:
        out["build"] = build.describe()
        out.update(build.values)
    out["host"] = socket.gethostname()
    with contextlib.suppress(KeyError, OSError):  # a container user without a passwd entry
        out["user"] = getpass.getuser()
    return out


def make_record(
    event: str,
    manifest: Manifest,
    *,
    signer: str | None,
    parts: Iterable[str] | None = None,
    details: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    signature: str | None = None,
) -> Record:
    wanted = None if parts is None else set(parts)
    chosen = tuple(
        {"name": p.name, "payload": {"key": p.payload.key, "size": p.payload.size, "sha256": p.payload.sha256}}
        for p in manifest.parts
        if wanted is None or p.name in wanted
    )
    return Record(
        event=event,
        bundle=manifest.name,
        version=manifest.version,
        at=now or datetime.now(UTC),
        signer=signer,
        parts=chosen,
        by=who(env),
        details=dict(details or {}),
        signature=signature,
    )


def write_record(
    store: Store | None,
    source: Source,
    event: str,
    manifest: Manifest,
    *,
    signer: str | None,
    log: Log,
    parts: Iterable[str] | None = None,
    details: Mapping[str, Any] | None = None,
    also: Iterable[Store] = (),
    env: Mapping[str, str] | None = None,
    signature: str | None = None,
) -> Record:
    """Record one event: a line on stderr (through ``log``) always, an object in each store that takes it.

    ``store`` is where the event happened (None: stderr only); ``also`` are further stores that get
    the same object (export puts it on the medium too). ``parts`` limits the digests to the parts the
    event moved (a get of some parts). A refused or failed write is a warning, never an exception:
    the transfer it records has already succeeded.
    """
    record = make_record(event, manifest, signer=signer, parts=parts, details=details, env=env, signature=signature)
    key = record.key(source)
    stored: list[str] = []
    for target in ([store] if store is not None else []) + list(also):
        try:
            target.put_bytes(key, record.to_json_bytes() + b"\n")  # the random id keeps keys apart
            stored.append(_location(target, key))
        except (StoreError, OSError) as e:
            denied = isinstance(e, (AccessDeniedError, PermissionError))
            why = "this identity may not write there" if denied else str(e)
            log(f"warning: the {event} record was not stored in {target.description}: {why}")
    show_json = _print_json if _print_json is not None else not stored
    log(f"record: {summary(record.to_json(), stored, json_follows=show_json)}")
    if show_json:
        log(f"record: {record.to_json_bytes().decode('utf-8')}")
    return record


def _location(store: Store, key: str) -> str:
    if isinstance(store, S3Store):
        return f"s3://{store.bucket}/{key}"
    if isinstance(store, DirStore):
        return os.path.join(store.root, key)
    return f"{store.description}: {key}"


def summary(doc: Mapping[str, Any], stored: Iterable[str], *, json_follows: bool = True) -> str:
    """One line a person reads: what happened to which version, by whom, how much, whose signature,
    and where the full record is."""
    by = doc.get("by") or {}
    who_ = by.get("build") or "@".join(x for x in (by.get("user"), by.get("host")) if x) or "-"
    parts = [p for p in doc.get("parts") or [] if isinstance(p, dict)]
    size = sum(int((p.get("payload") or {}).get("size") or 0) for p in parts)
    signature = doc.get("signature")
    signer = f"signer {doc['signer']}" if doc.get("signer") else "UNSIGNED"
    if not doc.get("signer") and signature not in (None, "unsigned"):
        signer = f"signature {signature}"  # publish of a folder: its get checked it
    where = ", ".join(stored) or ("nowhere (the JSON follows)" if json_follows else "nowhere (--verbose prints it)")
    return (
        f"{doc.get('event')} of {doc.get('bundle')} {doc.get('version')} by {who_}, {len(parts)} part(s), "
        f"{human(size)}, {signer}, stored at {where}"
    )


@dataclass(frozen=True)
class Listed:
    key: str
    doc: dict[str, Any] | None  # None: unreadable


def list_records(source: Source, store: Store, *, version: str | None = None) -> list[Listed]:
    """Records of ``source``'s bundle, oldest first; an unreadable one is listed with ``doc`` None."""
    out: list[Listed] = []
    for obj in store.list(records_prefix(source)):
        if not obj.key.endswith(".json"):
            continue
        try:
            data = store.get_bytes(obj.key, limit=RECORD_MAX_BYTES)
            doc = json.loads(data.decode("utf-8")) if data is not None else None
        except (BundleError, ValueError):
            doc = None
        if doc is not None and not isinstance(doc, dict):
            doc = None
        if version is not None and (doc is None or doc.get("version") != version):
            continue
        out.append(Listed(obj.key, doc))
    return sorted(out, key=lambda r: (str((r.doc or {}).get("at", "")), r.key))


def describe(doc: dict[str, Any]) -> str:
    """One line per record for ``offline-bundle records``."""
    by = doc.get("by") or {}
    who_ = by.get("build") or "@".join(x for x in (by.get("user"), by.get("host")) if x) or "-"
    parts = doc.get("parts") or []
    digests = ", ".join(
        f"{p.get('name')}={str((p.get('payload') or {}).get('sha256', ''))[:12]}" for p in parts if isinstance(p, dict)
    )
    signer = doc.get("signer") or "UNSIGNED"
    head = f"{doc.get('at', '?')}  {doc.get('event', '?'):<7} {doc.get('version', '?')}"
    return f"{head}  signer {signer}  by {who_}  [{digests}]"
