"""The manifest of format version 1 (docs/format.md): what was packed, where its bytes are, how they are sealed.

The manifest is the one thing the far side trusts (it is what the signature covers), so the
parser is strict: every field is typed and checked, every path is safe to create below a part
folder, and a format it does not know is refused rather than half-read.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from offline_bundle import __version__
from offline_bundle.core.names import check_part_name, is_reserved_part_name, is_valid_name
from offline_bundle.errors import ConfigError, VerificationError

FORMAT_VERSION = 1
TOOL_NAME = "offline-bundle"
FILE_TYPES = ("file", "dir", "symlink")
SHA256_HEX_LENGTH = 64
MAX_LINE = 19_000  # GnuPG clear-signs lines of at most 19,995 characters
# A file's "probe" is the SHA-256 of its first PROBE_BYTES: a later put reads that much, not the whole
# file, to see that a file of the same size changed before deciding whether a payload can be reused.
PROBE_BYTES = 64 * 1024
# A payload key is relative to the bundle's folder (``<prefix><name>/``): ``_blobs/<id>``, the id chosen
# by the writer before the upload starts. A strict pattern keeps a signed manifest from naming anything
# outside that folder (absolute keys, ``..``, another bundle, ``_records/``) in whatever store reads it.
BLOBS_FOLDER = "_blobs/"
PAYLOAD_ID_LENGTHS = (32, 64)  # 128 random bits as written; up to 256 bits accepted
_PAYLOAD_KEY = re.compile(r"_blobs/[0-9a-f]{32,64}")


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
        """Same path, type, mode and bytes: what docs/reference.md calls the same content (mtimes aside)."""
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
        return {**self.head_json(), "files": [f.to_json() for f in self.files]}

    def head_json(self) -> dict[str, Any]:
        """``to_json()`` without the files (a map per file of 100,000 took 30 MB)."""
        return {
            "name": self.name,
            "destination": self.destination,
            "payload": {"key": self.payload.key, "size": self.payload.size, "sha256": self.payload.sha256},
            "encryption": self.encryption.to_json(),
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

        One line would be simplest, but GnuPG cannot clear-sign a line longer than 19,995 characters
        (it signs the line cut short, with a warning): a manifest of a few hundred files is longer.
        Breaking lines between array elements keeps it valid, compact JSON whose every line is one
        file entry, far below that limit; readers parse it as any JSON. Built as one list of
        pieces joined once: a manifest of tens of MiB is not copied over and over.
        """
        return b"".join(self.json_pieces())

    def json_pieces(self) -> Iterator[bytes]:
        """``to_json_bytes()`` in pieces, for a writer that need not hold it whole (clear-signing)."""
        return (piece.encode("ascii") for piece in self._pieces())

    def encoded_size(self) -> int:
        """Length of ``to_json_bytes()`` without building it (the put side checks it before uploading)."""
        return sum(len(piece) for piece in self._pieces())

    def _pieces(self) -> Iterator[str]:
        """The JSON text in pieces that never span a line break; refuses a line too long to clear-sign."""
        head: dict[str, Any] = {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "tool": self.tool,
        }
        if self.created_by:
            head["created_by"] = self.created_by

        def line(text: str, what: str) -> str:
            if len(text) + 1 > MAX_LINE:
                raise ConfigError(
                    f"{what} makes a manifest line of {len(text) + 1} characters; OpenPGP clear-signing takes "
                    f"at most {MAX_LINE} (a path, a link target or a build variable is far too long)"
                )
            return text

        yield line(_dump(head)[:-1] + ',"parts":[', "the bundle's name, version or build variables")
        for i, p in enumerate(self.parts):
            doc = p.head_json()
            yield ("\n" if i == 0 else ",\n") + line(_dump(doc)[:-1] + ',"files":[', f"part {p.name}")
            for j, f in enumerate(p.files):
                text = _entry_line(f)
                if len(text) + 1 > MAX_LINE:  # the message is only built for a line too long
                    line(text, f"{f.path[:60]!r} in part {p.name}")
                yield ("\n" if j == 0 else ",\n") + text
            yield "\n]}" if p.files else "]}"
        yield "\n]}"

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


# A path in a part becomes <dest>/<part>/<path> on the far side, and Linux refuses paths over 4,096
# bytes and names over 255: a path is kept under both with 1 KiB left for the destination folder.
MAX_PATH_BYTES = 3072
MAX_NAME_BYTES = 255
# Control characters break SHA256SUMS lines, terminals and S3 listings (XML 1.0 cannot carry them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_LINK_HOPS = 40  # as the kernel's own bound on nested symbolic links


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


_str = json.encoder.encode_basestring_ascii


def _json_value(value: str | int | None) -> str:
    if value is None:
        return "null"
    return _str(value) if isinstance(value, str) else str(int(value))


def _entry_line(f: FileEntry) -> str:
    """``_dump(f.to_json())`` without the dict and the encoder: a third of packing 100,000 small
    files went to serialising their entries (twice: once for the size bound, once to sign).
    tests/unit/test_manifest.py checks both give equal text."""
    text = f'{{"mode":"{f.mode:04o}","mtime":{_json_value(f.mtime)},"path":{_str(f.path)}'
    if f.type == "file":
        if f.probe is not None:
            text += f',"probe":{_str(f.probe)}'
        text += f',"sha256":{_json_value(f.sha256)},"size":{_json_value(f.size)}'
    elif f.type == "symlink":
        text += f',"target":{_json_value(f.target)}'
    return text + f',"type":{_str(f.type)}}}'


def check_member_path(path: object, what: str = "unsafe path") -> str:
    """A path inside a part: relative, normalised, UTF-8, no '.'/'..' segments, no control characters.

    The put side applies the same check before uploading, so that no committed version holds a
    name that a get would refuse.
    """
    if not isinstance(path, str) or not path:
        raise VerificationError(f"{what} {path!r}: empty or not a string")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise VerificationError(f"{what} {path!r}: absolute or with a backslash or NUL")
    segments = path.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise VerificationError(f"{what} {path!r}: it must be normalised and must not contain '..'")
    if _CONTROL.search(path):
        raise VerificationError(f"{what} {path!r}: it contains a control character (a line break, tab, ...)")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise VerificationError(f"{what} {path!r}: not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise VerificationError(
            f"{what} {path[:60]!r}...: {size} bytes long, more than {MAX_PATH_BYTES} (the far side could not "
            "create it below its destination folder)"
        )
    if any(len(seg.encode("utf-8")) > MAX_NAME_BYTES for seg in segments):
        raise VerificationError(f"{what} {path[:60]!r}...: a name in it is longer than {MAX_NAME_BYTES} bytes")
    return path


def symlink_stays_inside(path: str, target: str) -> bool:
    """True if a link at ``path`` (relative to the part root) pointing to ``target`` stays in the part.

    This judges the text alone; ``resolve_links`` judges where links really lead, through the
    part's other links.
    """
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


def resolve_links(links: Mapping[str, str]) -> dict[str, str | None]:
    """Where each link of a part leads: a path in the part ('' is its root), or None if it leaves it.

    ``links`` maps each symlink's path in the part to its target. A target is walked as the kernel
    walks it: from the link's folder, component by component, and a component that is one of the
    part's links is replaced by where that link leads. So ``up -> ../..`` in a deep folder followed
    by ``escape -> deep/up/../../etc`` is caught although each text alone stays inside. None for an
    absolute or empty target, a '..' above the part's root, a loop, or links nested deeper than
    MAX_LINK_HOPS. A link that leads to a path the part does not hold is not None: it dangles
    inside the part (the caller decides whether that is acceptable).
    """
    resolver = _LinkResolver(links)
    return {link: resolver.resolve(link, 1)[0] for link in links}


class _LinkResolver:
    """The walk of ``resolve_links``, remembering where each link leads once that is known."""

    def __init__(self, links: Mapping[str, str]) -> None:
        self.links = links
        self.done: dict[str, tuple[str | None, int]] = {}
        self.busy: set[str] = set()

    def resolve(self, link: str, level: int) -> tuple[str | None, int, bool]:
        """(where ``link`` leads, how deep its chain of links is, whether the walk was cut short).

        ``level`` is how many links led here: the walk stops at the bound instead of recursing
        down a chain of thousands, and a result cut short is not remembered (from a shallower
        start the same link may well resolve).
        """
        if link in self.done:
            return (*self.done[link], False)
        if link in self.busy:
            return None, MAX_LINK_HOPS + 1, False  # a loop
        if level > MAX_LINK_HOPS:
            return None, MAX_LINK_HOPS + 1, True
        self.busy.add(link)
        target = self.links[link]
        result: tuple[str | None, int] = (None, 1)
        cut = False
        if target and not target.startswith("/") and "\x00" not in target:
            result, cut = self._walk(link, target, level)
        self.busy.discard(link)
        if not cut:
            self.done[link] = result
        return (*result, cut)

    def _walk(self, link: str, target: str, level: int) -> tuple[tuple[str | None, int], bool]:
        """Follow ``target`` from ``link``'s folder, component by component, through the part's links."""
        stack = link.split("/")[:-1]
        depth = 1
        cut = False
        for seg in target.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                if not stack:
                    return (None, 1), cut  # above the part's root
                stack.pop()
                continue
            stack.append(seg)
            here = "/".join(stack)
            if here in self.links:
                inner, inner_depth, inner_cut = self.resolve(here, level + 1)
                cut = cut or inner_cut
                depth = max(depth, inner_depth + 1)
                if inner is None or depth > MAX_LINK_HOPS:
                    return (None, 1), cut
                stack = inner.split("/") if inner else []
        return ("/".join(stack), depth), cut


def check_links(files: Iterable[FileEntry]) -> None:
    """Refuse a part whose links leave it once the part's own links are followed (``resolve_links``)."""
    links = {f.path: f.target or "" for f in files if f.type == "symlink"}
    if not links:
        return
    for path, where in resolve_links(links).items():
        if where is None:
            raise VerificationError(
                f"unsafe symlink {path!r} -> {links[path]!r}: it leads outside its part "
                f"(followed through the part's other links), or round a loop (more than {MAX_LINK_HOPS} links)"
            )


# os.utime takes a 64-bit time_t; anything beyond is no time a file can have.
MAX_MTIME = 1 << 63


def distinct_keys(refuse: Callable[[str], Exception]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json.loads`` object hook that raises ``refuse(key)`` for a key given twice in one object.

    json keeps the last of two equal keys, other readers (jq, a reviewer's tool) may keep the first:
    signed text (a manifest, an approval statement) must mean the same to every reader.
    """

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for key, value in pairs:
            if key in doc:
                raise refuse(key)
            doc[key] = value
        return doc

    return hook


_object_without_duplicates = distinct_keys(lambda key: _fail(f"the key {key!r} appears twice in one object"))
_FILE_KEYS = frozenset({"path", "type", "mode", "mtime", "size", "sha256", "target", "probe"})


def _object_as_parsed(pairs: list[tuple[str, Any]]) -> Any:
    """The JSON object hook of the manifest: a file entry becomes its ``FileEntry`` as it is read.

    Why: a manifest of 100,000 files held as JSON maps before any was converted cost more memory
    than the rest of a get together. An object made only of file-entry keys that parses as one is
    kept as its ``FileEntry``; anything else stays a map, and one that fails is parsed again where
    its place is known (``parts[i].files[j]``), so the error names it exactly as before.
    """
    doc = _object_without_duplicates(pairs)
    if "path" in doc and "type" in doc and "mode" in doc and doc.keys() <= _FILE_KEYS:
        try:
            return _parse_file(doc, "")
        except VerificationError:
            return doc
    return doc


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
    if not -MAX_MTIME <= mtime < MAX_MTIME:
        raise _fail(f"{where}.mtime is out of range")
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
    # The type is one of four words: one string object for all entries, not one each.
    ftype = sys.intern(ftype)
    return FileEntry(path=path, type=ftype, mode=mode, mtime=mtime, size=size, sha256=sha, target=target, probe=probe)


def check_payload_key(key: str, where: str = "payload.key") -> str:
    """``key`` if it is ``_blobs/<id>``; a VerificationError naming the rule otherwise."""
    if _PAYLOAD_KEY.fullmatch(key) is None:
        shown = key if len(key) <= 80 else key[:77] + "..."
        low, high = PAYLOAD_ID_LENGTHS
        raise _fail(
            f"{where} {shown!r} is not {BLOBS_FOLDER}<id> ({low} to {high} lowercase hex digits) "
            "relative to the bundle's folder; refused"
        )
    return key


def _parse_part(doc: Any, where: str) -> Part:
    if not isinstance(doc, dict):
        raise _fail(f"{where} is not a map")
    name = _get(doc, "name", str, where)
    try:
        check_part_name(name)
    except Exception:
        raise _fail(f"{where}.name {name!r} is not a valid part name") from None
    destination = _get(doc, "destination", str, where)
    if (
        destination.startswith("/")
        or ".." in destination.split("/")
        or "\\" in destination
        or _CONTROL.search(destination)
        or (destination and not destination.endswith("/"))
    ):  # what the put side writes: a relative folder of plain names, publish's keys stay below the prefix
        raise _fail(f"{where}.destination is not a safe relative prefix")
    p = _get(doc, "payload", dict, where)
    payload = Payload(
        key=_get(p, "key", str, where + ".payload"),
        size=_get(p, "size", int, where + ".payload"),
        sha256=_get(p, "sha256", str, where + ".payload"),
    )
    if not _is_hex(payload.sha256) or payload.size < 0:
        raise _fail(f"{where}.payload has a bad size or sha256")
    check_payload_key(payload.key, f"{where}.payload.key")
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
    files = tuple(
        f if isinstance(f, FileEntry) else _parse_file(f, f"{where}.files[{i}]") for i, f in enumerate(files_doc)
    )
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
    check_links(files)
    return Part(name=name, destination=destination, payload=payload, encryption=encryption, files=files)


def parse_manifest(data: bytes | memoryview) -> Manifest:
    """Parse signed manifest bytes; every payload key must be ``_blobs/<id>`` inside the bundle's folder."""
    try:
        doc = json.loads(str(data, "utf-8"), object_pairs_hook=_object_as_parsed)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        # ValueError: also an integer of more than 4,300 digits, which is not a JSONDecodeError.
        raise _fail(f"not JSON ({e.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise _fail("not a JSON object")
    fv = doc.get("format_version")
    if type(fv) is not int or fv != FORMAT_VERSION:  # true and 1.0 equal 1 in Python
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
    parts = tuple(_parse_part(p, f"parts[{i}]") for i, p in enumerate(parts_doc))
    names = [p.name for p in parts]
    if len({n.casefold() for n in names}) != len(names):
        raise _fail("two parts share a name (in some case: one folder on a case-insensitive destination)")
    for n in names:
        if is_reserved_part_name(n):
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
