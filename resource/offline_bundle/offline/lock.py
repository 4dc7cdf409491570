"""``offline.lock.yml``: every locked artifact, where it is carried to, and what pin kept or refused.

The lock is data, shared by ``pin`` (which writes it) and ``fetch`` (which reads it on the connected
side): it is written deterministically (entries sorted, no YAML anchors), so the same inputs give the
same bytes and a moved upstream tag changes exactly the one entry it moves.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from offline_bundle.core.yamlfile import load_yaml
from offline_bundle.errors import ConfigError

LOCK_NAME = "offline.lock.yml"
LOCK_FORMAT = 1
ROOTFS_FILE = "rootfs.tgz"
OCI_FILE = "image.tar"
GIT_FILE = "source.tgz"
FILES_ARCHIVE = "files.tar"


def slug(text: str, limit: int = 80) -> str:
    """A key- and part-name-safe form of a repository, URL or name (readable, not unique by itself)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"
    s = re.sub(r"\.\.+", ".", s)
    if len(s) > limit:
        s = s[: limit - 13] + "-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return s


@dataclass
class Entry:
    """One locked artifact. ``keys`` maps each carried file to its air-gapped object key."""

    kind: str  # image | git | file
    id: str
    part: str
    destination: str
    keys: dict[str, str]
    fields: dict[str, Any]
    used_by: list[str] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            **self.fields,
            "part": self.part,
            "destination": self.destination,
            "keys": dict(sorted(self.keys.items())),
            "used_by": sorted(set(self.used_by)),
        }


def entry_from_doc(doc: Mapping[str, Any]) -> Entry:
    base = {"kind", "id", "part", "destination", "keys", "used_by"}
    missing = sorted(k for k in base if k not in doc)
    if missing:
        raise ConfigError(f"lock entry {doc.get('id', '?')!r} lacks {', '.join(missing)}")
    return Entry(
        kind=str(doc["kind"]),
        id=str(doc["id"]),
        part=str(doc["part"]),
        destination=str(doc["destination"]),
        keys={str(k): str(v) for k, v in dict(doc["keys"]).items()},
        fields={k: v for k, v in doc.items() if k not in base},
        used_by=list(doc.get("used_by") or []),
    )


@dataclass
class Lock:
    prefix: str
    form: str  # "s3" or "registry"
    registry: str | None
    pipelines: list[str]
    entries: dict[str, Entry] = field(default_factory=dict)
    kept: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)

    def to_yaml(self) -> str:
        doc = {
            "lock_format": LOCK_FORMAT,
            "prefix": self.prefix,
            "form": self.form,
            "registry": self.registry,
            "pipelines": sorted(self.pipelines),
            "artifacts": [e.to_doc() for _, e in sorted(self.entries.items())],
            "kept": sorted(self.kept, key=lambda k: (k["pipeline"], k["resource"])),
            "refused": sorted(self.refused, key=lambda k: (k["pipeline"], k["what"])),
        }
        return dump_yaml(doc)


def load_lock(path: str | os.PathLike[str]) -> Lock:
    doc = load_yaml(str(path), "lock")
    if not isinstance(doc, dict) or doc.get("lock_format") != LOCK_FORMAT:
        raise ConfigError(f"{path} is not an offline.lock.yml of lock_format {LOCK_FORMAT}")
    artifacts = doc.get("artifacts") or []
    if not isinstance(artifacts, list):
        raise ConfigError(f"{path}: artifacts must be a list")
    lock = Lock(
        prefix=str(doc.get("prefix") or ""),
        form=str(doc.get("form") or "s3"),
        registry=doc.get("registry"),
        pipelines=list(doc.get("pipelines") or []),
        kept=list(doc.get("kept") or []),
        refused=list(doc.get("refused") or []),
    )
    for item in artifacts:
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: every artifact must be a map")
        e = entry_from_doc(item)
        if e.id in lock.entries:
            raise ConfigError(f"{path}: artifact {e.id} is listed twice")
        lock.entries[e.id] = e
    return lock


class _PlainDumper(yaml.SafeDumper):
    """No ``&id001`` anchors: a pipeline read by people (and by fly) has every value written out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False, width=1000, default_flow_style=False)
