"""The manifest of format version 1 (SPEC §7): what was packed, where its bytes are, how they are sealed.

The manifest is the one thing the far side trusts (it is what the signature covers), so the
parser is strict: every field is typed and checked, every path is safe to create below a part
folder, and a format it does not know is refused rather than half-read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .errors import ConfigError, VerificationError
from .names import RESERVED_PART_NAMES, check_part_name, is_valid_name

FORMAT_VERSION = 1
TOOL_NAME = "offline-bundle"
FILE_TYPES = ("file", "dir", "symlink")
SHA256_HEX_LENGTH = 64
MAX_LINE = 19_000  # GnuPG clear-signs lines of at most 19,995 characters
# A file's "probe" is the SHA-256 of its first PROBE_BYTES: a later put reads that much, not the whole
# file, to see that a file of the same size changed before deciding whether a payload can be reused.
PROBE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    type: str
    mode: int
    mtime: int
    size: int = 0
    sha256: str | None = None
    target: str | None = None
    probe: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "mode": f"{self.mode:04o}",
            "mtime": self.mtime,
        }
        if self.type == "file":
            out["size"] = self.size
            out["sha256"] = self.sha256
            if self.probe is not None:
                out["probe"] = self.probe
        if self.type == "symlink":
            out["target"] = self.target
        return out

    def same_content(self, other: FileEntry) -> bool:
        """Same path, type, mode and bytes: what SPEC §4 calls the same content (mtimes aside)."""
        return (self.path, self.type, self.mode, self.size, self.sha256, self.target) == (
            other.path,
            other.type,
            other.mode,
            other.size,
            other.sha256,
            other.target,
        )


@dataclass(frozen=True)
class Payload:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Encryption:
    """How a payload is sealed; ``recipients`` are primary-key fingerprints."""

    recipients: tuple[str, ...] = ()
    passphrase: bool = False
    compression: str = "none"

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients) or self.passphrase

    def to_json(self) -> dict[str, Any]:
        return {
            "recipients": list(self.recipients),
            "passphrase": self.passphrase,
            "compression": self.compression,
        }


@dataclass(frozen=True)
class Part:
    name: str
    destination: str
    payload: Payload
    encryption: Encryption
    files: tuple[FileEntry, ...]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "destination": self.destination,
            "payload": {"key": self.payload.key, "size": self.payload.size, "sha256": self.payload.sha256},
            "encryption": self.encryption.to_json(),
            "files": [f.to_json() for f in self.files],
        }


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created_at: str
    parts: tuple[Part, ...]
    created_by: dict[str, str] | None = None
    tool: dict[str, str] = field(default_factory=lambda: {"name": TOOL_NAME, "version": __version__})
    format_version: int = FORMAT_VERSION

    def to_json_bytes(self) -> bytes:
        """Compact JSON with a line break before each part and each file entry.

        SPEC §7 asks for one line, but GnuPG cannot clear-sign a line longer than 19,995 characters
        (it signs the line cut short, with a warning): a manifest of a few hundred files is longer.
        Breaking lines between array elements keeps it valid, compact JSON whose every line is one
        file entry, far below that limit; readers parse it as any JSON.
        """
        head: dict[str, Any] = {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "tool": self.tool,
        }
        if self.created_by:
            head["created_by"] = self.created_by

        def dump(value: Any) -> str:
            return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True)

        parts = []
        for p in self.parts:
            doc = p.to_json()
            files = doc.pop("files")
            body = dump(doc)[:-1]  # the part's fields, without the closing brace
            lines = ",\n".join(dump(f) for f in files)
            parts.append(body + ',"files":[' + ("\n" + lines + "\n" if files else "") + "]}")
        text = dump(head)[:-1] + ',"parts":[\n' + ",\n".join(parts) + "\n]}"
        longest = max(len(line) for line in text.split("\n"))
        if longest > MAX_LINE:
            raise ConfigError(
                f"a manifest line is {longest} characters long; OpenPGP clear-signing takes at most {MAX_LINE} "
                "(a path or a build variable is far too long)"
            )
        return text.encode("ascii")

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise VerificationError(f"bundle {self.name} {self.version} has no part {name!r}")

    @property
    def file_count(self) -> int:
        return sum(len(p.files) for p in self.parts)

    @property
    def total_bytes(self) -> int:
        return sum(p.bytes for p in self.parts)


def check_member_path(path: object) -> str:
    """A path inside a part: relative, normalised, UTF-8, no '.'/'..' segments, no NUL."""
    if not isinstance(path, str) or not path:
        raise VerificationError(f"unsafe path {path!r}: empty or not a string")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise VerificationError(f"unsafe path {path!r}: absolute or with a backslash or NUL")
    segments = path.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise VerificationError(f"unsafe path {path!r}: it must be normalised and must not contain '..'")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise VerificationError(f"unsafe path {path!r}: not valid UTF-8") from None
    return path


def symlink_stays_inside(path: str, target: str) -> bool:
    """True if a link at ``path`` (relative to the part root) pointing to ``target`` stays in the part."""
    if not target or target.startswith("/") or "\x00" in target:
        return False
    depth = len(path.split("/")) - 1  # folders above the link inside the part
    for seg in target.split("/"):
        if seg == "..":
            depth -= 1
            if depth < 0:
                return False
        elif seg not in ("", "."):
            depth += 1
    return True


def _fail(what: str) -> VerificationError:
    return VerificationError(f"manifest is malformed: {what}")


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise _fail(f"{where}.{key} is missing")
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(f"{where}.{key} has the wrong type")
    return value


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _is_hex(value: str) -> bool:
    return len(value) == SHA256_HEX_LENGTH and _HEX64.fullmatch(value) is not None


def _parse_file(doc: Any, where: str) -> FileEntry:
    if not isinstance(doc, dict):
        raise _fail(f"{where} is not a map")
    path = check_member_path(_get(doc, "path", str, where))
    ftype = _get(doc, "type", str, where)
    if ftype not in FILE_TYPES:
        raise _fail(f"{where}.type {ftype!r} is not one of {', '.join(FILE_TYPES)}")
    mode_text = _get(doc, "mode", str, where)
    try:
        mode = int(mode_text, 8)
    except ValueError:
        raise _fail(f"{where}.mode is not octal") from None
    if not 0 <= mode <= 0o7777:
        raise _fail(f"{where}.mode is out of range")
    mtime = _get(doc, "mtime", int, where)
    size, sha, target, probe = 0, None, None, None
    if ftype == "file":
        size = _get(doc, "size", int, where)
        sha = _get(doc, "sha256", str, where)
        if size < 0 or not _is_hex(sha):
            raise _fail(f"{where} has a bad size or sha256")
        probe = doc.get("probe")
        if probe is not None and (not isinstance(probe, str) or not _is_hex(probe)):
            raise _fail(f"{where}.probe is not a SHA-256")
    elif ftype == "symlink":
        target = _get(doc, "target", str, where)
        if not symlink_stays_inside(path, target):
            raise VerificationError(f"unsafe symlink {path!r} -> {target!r}: it points outside its part")
    return FileEntry(path=path, type=ftype, mode=mode, mtime=mtime, size=size, sha256=sha, target=target, probe=probe)


def _parse_part(doc: Any, where: str, bundle_prefix_blobs: str | None) -> Part:
    if not isinstance(doc, dict):
        raise _fail(f"{where} is not a map")
    name = _get(doc, "name", str, where)
    try:
        check_part_name(name)
    except Exception:
        raise _fail(f"{where}.name {name!r} is not a valid part name") from None
    destination = _get(doc, "destination", str, where)
    if destination.startswith("/") or ".." in destination.split("/"):
        raise _fail(f"{where}.destination is not a safe relative prefix")
    p = _get(doc, "payload", dict, where)
    payload = Payload(
        key=_get(p, "key", str, where + ".payload"),
        size=_get(p, "size", int, where + ".payload"),
        sha256=_get(p, "sha256", str, where + ".payload"),
    )
    if not _is_hex(payload.sha256) or payload.size < 0:
        raise _fail(f"{where}.payload has a bad size or sha256")
    if not payload.key.endswith("/_blobs/" + payload.sha256):
        raise _fail(f"{where}.payload.key does not name the payload by its SHA-256")
    if bundle_prefix_blobs is not None and payload.key != bundle_prefix_blobs + payload.sha256:
        raise _fail(f"{where}.payload.key is outside this bundle's _blobs/ folder")
    e = _get(doc, "encryption", dict, where)
    recipients = _get(e, "recipients", list, where + ".encryption")
    if not all(isinstance(r, str) for r in recipients):
        raise _fail(f"{where}.encryption.recipients must be fingerprints")
    encryption = Encryption(
        recipients=tuple(recipients),
        passphrase=_get(e, "passphrase", bool, where + ".encryption"),
        compression=_get(e, "compression", str, where + ".encryption"),
    )
    files_doc = _get(doc, "files", list, where)
    files = tuple(_parse_file(f, f"{where}.files[{i}]") for i, f in enumerate(files_doc))
    seen: set[str] = set()
    kinds: dict[str, str] = {}
    for f in files:
        if f.path in seen:
            raise _fail(f"{where} lists {f.path!r} twice")
        seen.add(f.path)
        kinds[f.path] = f.type
    for f in files:
        parent = f.path.rpartition("/")[0]
        if parent and kinds.get(parent) != "dir":
            raise _fail(f"{where}: the folder of {f.path!r} is not listed as a dir")
    return Part(name=name, destination=destination, payload=payload, encryption=encryption, files=files)


def parse_manifest(data: bytes, *, blobs_prefix: str | None = None) -> Manifest:
    """Parse signed manifest bytes; ``blobs_prefix`` pins payload keys to this bundle's folder."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(f"not JSON ({e.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise _fail("not a JSON object")
    fv = doc.get("format_version")
    if fv != FORMAT_VERSION:
        raise VerificationError(
            f"bundle format_version {fv!r} is not supported by offline-bundle {__version__} "
            f"(it reads format_version {FORMAT_VERSION}); upgrade this side"
        )
    name = _get(doc, "name", str, "manifest")
    version = _get(doc, "version", str, "manifest")
    if not is_valid_name(name) or not is_valid_name(version):
        raise _fail("name or version breaks the naming rule")
    created_at = _get(doc, "created_at", str, "manifest")
    tool = _get(doc, "tool", dict, "manifest")
    created_by = doc.get("created_by")
    if created_by is not None and (
        not isinstance(created_by, dict) or not all(isinstance(v, str) for v in created_by.values())
    ):
        raise _fail("created_by must map names to strings")
    parts_doc = _get(doc, "parts", list, "manifest")
    parts = tuple(_parse_part(p, f"parts[{i}]", blobs_prefix) for i, p in enumerate(parts_doc))
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise _fail("two parts share a name")
    for n in names:
        if n in RESERVED_PART_NAMES:
            raise _fail(f"part name {n!r} is reserved")
    return Manifest(
        name=name,
        version=version,
        created_at=created_at,
        parts=parts,
        created_by=created_by,
        tool={str(k): str(v) for k, v in tool.items()},
        format_version=fv,
    )
