"""What changed between two versions, from their signed manifests alone (nothing is decrypted).

An approver reviews this, not the payloads: the manifest lists every file with its size, mode and
SHA-256, and the signature binds the manifest, so the diff of two verified manifests is exactly what
a second person needs to judge what is about to cross, without the decryption key or CI access.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from offline_bundle.bundle.commit import Trusted
from offline_bundle.core.config import BuildInfo
from offline_bundle.core.manifest import FileEntry, Manifest, Part


@dataclass(frozen=True)
class Side:
    version: str
    signer: str | None
    created_at: str
    created_by: str
    manifest_sha256: str

    @classmethod
    def of(cls, trusted: Trusted) -> Side:
        m = trusted.manifest
        return cls(
            m.version,
            trusted.signer,
            m.created_at,
            BuildInfo(m.created_by or {}).describe(),
            hashlib.sha256(trusted.manifest_bytes).hexdigest(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "signer": self.signer,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "manifest_sha256": self.manifest_sha256,
        }


@dataclass(frozen=True)
class FileChange:
    part: str
    path: str
    old: FileEntry | None  # None: added
    new: FileEntry | None  # None: removed


@dataclass(frozen=True)
class PartChange:
    name: str
    status: str  # added, removed, changed, unchanged
    what: tuple[str, ...]  # for a changed part: which of destination, encryption, files, payload changed
    old: Part | None
    new: Part | None


@dataclass(frozen=True)
class BundleDiff:
    name: str
    old: Side | None
    new: Side
    parts: tuple[PartChange, ...]
    files: tuple[FileChange, ...]
    reused: tuple[Part, ...]  # parts of the new version whose payload object the old one also references

    def parts_with(self, status: str) -> list[str]:
        return [p.name for p in self.parts if p.status == status]

    def files_with(self, status: str) -> list[FileChange]:
        pick = {
            "added": lambda c: c.old is None,
            "removed": lambda c: c.new is None,
            "changed": lambda c: c.old is not None and c.new is not None,
        }[status]
        return [c for c in self.files if pick(c)]


def _file_changes(part: str, old: tuple[FileEntry, ...], new: tuple[FileEntry, ...]) -> list[FileChange]:
    before = {f.path: f for f in old}
    after = {f.path: f for f in new}
    out = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a is None or b is None or not a.same_content(b):
            out.append(FileChange(part, path, a, b))
    return out


def diff_manifests(old: Trusted | None, new: Trusted) -> BundleDiff:
    """Parts and files added, removed and changed (mtimes aside), and the payloads ``new`` reuses."""
    om: Manifest | None = old.manifest if old else None
    nm = new.manifest
    before = {p.name: p for p in om.parts} if om else {}
    after = {p.name: p for p in nm.parts}
    old_payloads = {(p.payload.key, p.payload.sha256) for p in before.values()}
    parts: list[PartChange] = []
    files: list[FileChange] = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        changes = _file_changes(name, a.files if a else (), b.files if b else ())
        files += changes
        if a is None or b is None:
            parts.append(PartChange(name, "added" if a is None else "removed", (), a, b))
            continue
        what = [
            label
            for label, differs in (
                ("destination", a.destination != b.destination),
                ("encryption", a.encryption != b.encryption),
                ("files", bool(changes)),
                ("payload", a.payload != b.payload),
            )
            if differs
        ]
        parts.append(PartChange(name, "changed" if what else "unchanged", tuple(what), a, b))
    reused = tuple(p for p in nm.parts if (p.payload.key, p.payload.sha256) in old_payloads)
    return BundleDiff(nm.name, Side.of(old) if old else None, Side.of(new), tuple(parts), tuple(files), reused)


# ------------------------------------------------------------------------------------------- output


def _entry_json(f: FileEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": f.type, "mode": f"{f.mode:04o}"}
    if f.type == "file":
        out.update(size=f.size, sha256=f.sha256)
    if f.type == "symlink":
        out["target"] = f.target
    return out


def to_json(d: BundleDiff) -> dict[str, Any]:
    return {
        "name": d.name,
        "old": d.old.to_json() if d.old else None,
        "new": d.new.to_json(),
        "parts": {s: d.parts_with(s) for s in ("added", "removed", "changed", "unchanged")},
        "parts_changed": {p.name: list(p.what) for p in d.parts if p.status == "changed"},
        "files": {
            "added": [{"part": c.part, "path": c.path, **_entry_json(c.new)} for c in d.files_with("added") if c.new],
            "removed": [
                {"part": c.part, "path": c.path, **_entry_json(c.old)} for c in d.files_with("removed") if c.old
            ],
            "changed": [
                {"part": c.part, "path": c.path, "old": _entry_json(c.old), "new": _entry_json(c.new)}
                for c in d.files_with("changed")
                if c.old and c.new
            ],
        },
        "payloads_reused": [
            {"part": p.name, "key": p.payload.key, "size": p.payload.size, "sha256": p.payload.sha256} for p in d.reused
        ],
    }


def to_json_text(d: BundleDiff) -> str:
    return json.dumps(to_json(d), indent=2, sort_keys=True)


def _describe_entry(f: FileEntry) -> str:
    if f.type == "dir":
        return f"dir {f.mode:04o}"
    if f.type == "symlink":
        return f"link -> {f.target}"
    return f"{f.size} bytes {f.mode:04o} sha256 {f.sha256}"


def _describe_change(old: FileEntry, new: FileEntry) -> str:
    if old.type != new.type:
        return f"{_describe_entry(old)}  =>  {_describe_entry(new)}"
    said = []
    if old.type == "file" and old.size != new.size:
        said.append(f"size {old.size} -> {new.size}")
    if old.type == "file" and old.sha256 != new.sha256:
        said.append(f"sha256 {old.sha256} -> {new.sha256}")
    if old.mode != new.mode:
        said.append(f"mode {old.mode:04o} -> {new.mode:04o}")
    if old.target != new.target:
        said.append(f"link {old.target} -> {new.target}")
    return ", ".join(said)


def to_text(d: BundleDiff) -> list[str]:
    """Lines for a person: who made each side, then parts, files and reused payloads."""
    lines = [f"bundle {d.name}: {d.old.version if d.old else '(nothing)'} -> {d.new.version}"]
    for label, side in (("old", d.old), ("new", d.new)):
        if side is None:
            lines.append(f"  {label} (none: every part and file is new)")
            continue
        lines.append(
            f"  {label} {side.version}: signed by {side.signer or 'UNSIGNED'}; created {side.created_at} "
            f"by {side.created_by}; manifest sha256 {side.manifest_sha256}"
        )
    counts = ", ".join(f"{len(d.parts_with(s))} {s}" for s in ("added", "removed", "changed", "unchanged"))
    lines.append(f"parts: {counts}")
    sign = {"added": "+", "removed": "-", "changed": "~", "unchanged": "="}
    for p in d.parts:
        part = p.new or p.old
        assert part is not None
        detail = f" ({', '.join(p.what)})" if p.what else ""
        lines.append(f"  {sign[p.status]} {p.name} -> {part.destination}  {p.status}{detail}")
        if p.status == "changed" and "destination" in p.what and p.old and p.new:
            lines.append(f"      destination {p.old.destination} -> {p.new.destination}")
    counts = ", ".join(f"{len(d.files_with(s))} {s}" for s in ("added", "removed", "changed"))
    lines.append(f"files: {counts}")
    for c in d.files:
        if c.old is None and c.new is not None:
            lines.append(f"  + {c.part}/{c.path}  {_describe_entry(c.new)}")
        elif c.new is None and c.old is not None:
            lines.append(f"  - {c.part}/{c.path}  {_describe_entry(c.old)}")
        elif c.old is not None and c.new is not None:
            lines.append(f"  ~ {c.part}/{c.path}  {_describe_change(c.old, c.new)}")
    lines.append(f"payloads reused: {len(d.reused)}")
    for r in d.reused:
        lines.append(f"  = {r.name}: {r.payload.key} ({r.payload.size} bytes, sha256 {r.payload.sha256})")
    return lines
